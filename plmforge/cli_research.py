"""Command line of the two research systems: `plmforge instruct` (protein-to-text instruction model) and
`plmforge ptm` (PTM-Mamba). Parses arguments and prints results; the work is in plmforge.instruct and
plmforge.ptm."""

from __future__ import annotations

import argparse
from pathlib import Path

from plmforge.errors import PlmforgeError


def research_parsers(sub: argparse._SubParsersAction) -> None:
    _instruct_parser(sub)
    _ptm_parser(sub)


def _instruct_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("instruct", help="protein-to-text instruction model (encoder + adapters + causal LM)")
    isub = p.add_subparsers(dest="instruct_command", required=True)
    t = isub.add_parser("train", help="train with the HuggingFace Trainer (config file and/or section.key=value)",
                        description="Sections: model (encoder, decoder, adapter/Perceiver sizes, dtype), lora, data "
                        "(train/validation/test files, task), training (TrainingArguments by their names, stage: "
                        "instruct, align or align+instruct, resume_from_checkpoint).")
    t.add_argument("--config", help="YAML config file")
    t.add_argument("overrides", nargs="*", help="section.key=value, e.g. training.num_train_epochs=2")
    t.set_defaults(func=_instruct_train)
    g = isub.add_parser("generate", help="answer questions about a protein (and a fragment of it) with a run")
    g.add_argument("run_dir")
    g.add_argument("--sequence", help="one protein sequence")
    g.add_argument("--question", help="the question about it")
    g.add_argument("--fragment", help="the referenced fragment: START-END, 0-based, END excluded")
    g.add_argument("--task", choices=["description", "referring_desc", "referring_class", "grounding_single",
                                      "grounding_group"], help="default: referring_desc with --fragment, else "
                                                               "description")
    g.add_argument("--input", help="a file of records (JSON, JSONL, CSV) to answer in batch")
    g.add_argument("--output", help="with --input: CSV of the answers (default answers.csv)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--checkpoint", default="final", help="final (default) or a checkpoint-N directory of the run")
    g.set_defaults(func=_instruct_generate)


def _instruct_train(args: argparse.Namespace) -> int:
    from plmforge.instruct.config import load_instruct_config
    from plmforge.instruct.run import train_instruct

    result = train_instruct(load_instruct_config(args.config, args.overrides))
    return _print_run(result.run_dir, result.test_metrics)


def _print_run(run_dir: Path, test: dict[str, float] | None) -> int:
    print(f"run directory: {run_dir}")
    for key, value in (test or {}).items():
        print(f"  test {key}: {value:.4f}" if isinstance(value, float) else f"  test {key}: {value}")
    return 0


def _instruct_generate(args: argparse.Namespace) -> int:
    from plmforge.instruct.data import Example, format_spans, load_examples, spans_in_protein
    from plmforge.instruct.run import generate, load_instruct

    if args.max_new_tokens < 1:
        raise PlmforgeError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if bool(args.input) == bool(args.sequence):
        raise PlmforgeError("give either --sequence with --question, or --input FILE")
    if args.sequence and not args.question:
        raise PlmforgeError("--sequence needs --question")
    ref = None
    if args.fragment:
        start, sep, end = args.fragment.partition("-")
        if not (sep and start.strip().isdigit() and end.strip().isdigit()) or int(start) >= int(end):
            raise PlmforgeError(f"--fragment must be START-END with START < END (0-based, END excluded), "
                                f"got {args.fragment!r}")
        ref = (int(start), int(end))
    if args.sequence:
        odd = sorted(set(args.sequence.strip().upper()) - set("ACDEFGHIKLMNPQRSTVWYBZUOX"))
        if odd:
            raise PlmforgeError(f"--sequence holds {', '.join(map(repr, odd))}, which are not amino-acid letters "
                                "(stop codons '*' and gaps '-' included); give the protein's residues only")
    if args.input:
        from plmforge.owned import check_output_file

        check_output_file(args.output or "answers.csv", overwrite=args.overwrite, inputs=[args.input])
    built = load_instruct(args.run_dir, args.checkpoint)
    options = {"max_new_tokens": args.max_new_tokens, "do_sample": args.sample, "temperature": args.temperature,
               "top_p": args.top_p}
    if args.input:
        from plmforge.instruct.scores import score, write_predictions

        examples = load_examples(args.input, args.task or built.config.data.task,
                                 built.config.model.max_sequence_length, require_answer=False)
        answers = generate(built, examples, **options)
        out = Path(args.output or "answers.csv")
        write_predictions(examples, answers, out)
        print(f"wrote {len(answers)} answers to {out}")
        if all(e.answer for e in examples):  # every record has its reference answer: score them
            for key, value in score(examples, answers).items():
                print(f"  {key}: {value:.4f}")
        return 0
    seq = args.sequence.strip().upper()
    if ref is not None and not ref[1] <= len(seq):
        raise PlmforgeError(f"--fragment {args.fragment} lies outside the {len(seq)}-residue sequence")
    if len(seq) > built.config.model.max_sequence_length:
        raise PlmforgeError(f"the sequence has {len(seq)} residues; this run takes up to "
                            f"{built.config.model.max_sequence_length} (crop it around the fragment)")
    task = args.task or ("referring_desc" if ref else "description")
    example = Example(seq, [{"role": "user", "content": args.question}], "", task, ref, [], 0, "--sequence")
    [answer] = generate(built, [example], **options)
    print(f"answer: {answer}")
    spans = spans_in_protein(example, answer)
    if spans:
        print(f"spans: {format_spans(spans)}")
    return 0


def _config_command(psub: argparse._SubParsersAction, name: str, help_: str, description: str, example: str,
                    func: object) -> None:
    c = psub.add_parser(name, help=help_, description=description)
    c.add_argument("--config", help="YAML config file")
    c.add_argument("overrides", nargs="*", help=f"section.key=value, e.g. {example}")
    c.set_defaults(func=func)


def _ptm_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ptm", help="PTM-Mamba: a bidirectional Mamba language model over PTM-aware sequences")
    psub = p.add_subparsers(dest="ptm_command", required=True)
    _config_command(psub, "train", "train PTM-Mamba (config file and/or section.key=value; accelerate launch runs "
                    "it on several processes)",
                    "Sections: dataset (dataset_location, sequence_column_name, id_column_name, val_size, test_size, "
                    "split_seed), model (d_model, n_layers, d_state, ptm_tokens), training (num_train_epochs, "
                    "log_steps, per_device_train_batch_size, max_tokens_per_batch, lr, mask_prob, ptm_mask_prob, "
                    "output_dir, resume_from_checkpoint, use_esm, esm_model, use_precomputed_embeddings, "
                    "embeddings_dir).", "training.lr=0.0004", _ptm_train)
    _config_command(psub, "embed", "precompute the PLM states of the gated fusion into the embedding store (HDF5), "
                    "for training.use_precomputed_embeddings=true",
                    "Reads the same config as `ptm train` (dataset, model.ptm_tokens, training.esm_model, max_length, "
                    "max_tokens_per_batch, embeddings_dir). The PLM reads each sequence's parent residues with PTM "
                    "positions as its mask token. Precomputed states cannot hide the residues the MLM objective masks "
                    "at each step (they are computed once); training zeroes the fused state there, but neighbouring "
                    "states have seen those residues, so amino-acid accuracy is optimistic with them. PTM-token "
                    "metrics are leak-free either way.", "training.esm_model=esm2_t33_650M_UR50D", _ptm_embed)


def _ptm_train(args: argparse.Namespace) -> int:
    from plmforge.ptm.train import load_ptm_config, train_ptm

    result = train_ptm(load_ptm_config(args.config, args.overrides))
    return _print_run(result.run_dir, result.test)


def _ptm_embed(args: argparse.Namespace) -> int:
    from plmforge.ptm.train import embed_ptm, load_ptm_config

    computed, before, where = embed_ptm(load_ptm_config(args.config, args.overrides))
    print(f"PLM states: {computed} sequences computed, {before} were already stored")
    print(f"store: {where}")
    print("train on them with training.use_precomputed_embeddings=true (same embeddings_dir)")
    return 0
