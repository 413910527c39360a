"""Command line of zero-shot mutation effects: `plmforge mutate scan`, `score` and `benchmark`. Parses
arguments and prints results; the work is in plmforge.mutate."""

from __future__ import annotations

import argparse

SCORING_HELP = ("masked_marginal (mask the site, log p(mutant) - log p(wild type); one pass per site), "
                "wt_marginal (the same from one unmasked pass), pll (pseudo-log-likelihood difference; exact for "
                "several substitutions, one pass per residue per variant)")


_MODEL_HELP = ("a masked language model: zoo name, hub id or local directory; esm1v for ESM-1v's five-model "
               "ensemble, or several models joined by commas (scores averaged); structure-aware SaProt and ProSST "
               "read --structure or --structure-tokens")


def mutate_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mutate", help="zero-shot mutation effects from a masked language model: saturation scans "
                                      "and variant scores (with ProteinGym's metrics for a DMS file)")
    msub = p.add_subparsers(dest="mutate_command", required=True)
    s = msub.add_parser("scan", help="score every substitution at every chosen position of one protein",
                        epilog="example: plmforge mutate scan --model antiberty --fasta heavy.fasta --positions "
                               "26-38 --out scan_cdr1")
    _common(s)
    s.add_argument("--positions", help="1-based positions and ranges, e.g. 10-40,55 (default: every position)")
    s.add_argument("--out", required=True, help="directory for scan.csv, top.csv, heatmap.png and scan.json")
    s.add_argument("--top", type=int, default=20, help="substitutions in top.csv (default 20)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier scan in --out")
    s.add_argument("--resume", action="store_true", help="continue an interrupted scan in --out")
    s.set_defaults(func=_scan)
    c = msub.add_parser("score", help="score single and multiple substitutions (inline or a DMS file)",
                        epilog="example: plmforge mutate score --model antiberty --sequence EVQLV... --mutations "
                               "assay.csv --out scores.csv")
    _common(c)
    c.add_argument("--mutations", required=True,
                   help="variants, e.g. 'A42G,K50R:A42G', or a CSV/TSV with a mutant column (ProteinGym's DMS "
                        "layout: mutant, mutated_sequence, DMS_score, DMS_score_bin)")
    c.add_argument("--out", help="CSV of the scores (with DMS_score: also <name>_metrics.json and <name>_scatter.png)")
    c.add_argument("--overwrite", action="store_true", help="replace existing output files")
    c.add_argument("--bootstrap", type=int, default=1000, help="resamples for the metrics' 95%% intervals (0: none)")
    c.set_defaults(func=_score)
    b = msub.add_parser("benchmark", help="score every assay of a ProteinGym-style folder and write the per-assay "
                                          "and averaged metrics (Spearman, AUC, MCC, NDCG, top recall)",
                        epilog="example: plmforge mutate benchmark --model esm1v --proteingym "
                               "ProteinGym/DMS_ProteinGym_substitutions --out bench_esm1v")
    b.add_argument("--model", required=True, help=_MODEL_HELP)
    b.add_argument("--proteingym", required=True, help="folder of DMS files (mutant, mutated_sequence, DMS_score, "
                   "DMS_score_bin), e.g. ProteinGym's DMS_ProteinGym_substitutions/")
    b.add_argument("--reference", help="ProteinGym's DMS_substitutions.csv (DMS_id, DMS_filename, target_seq); "
                   "default: found in the folder or its parent, else each wild type is read from its file")
    b.add_argument("--out", required=True, help="directory for scores/, metrics_by_assay.csv, <Metric>_DMS_level.csv "
                   "and summary.json/.csv")
    b.add_argument("--overwrite", action="store_true", help="replace an earlier benchmark in --out")
    b.add_argument("--resume", action="store_true", help="keep the assays already scored in --out")
    b.add_argument("--structures", help="SaProt models: the folder of the assays' structures (ProteinGym's AlphaFold2 "
                   "files, named by the reference's pdb_file, else <DMS_id>.pdb)")
    _run_options(b)
    b.set_defaults(func=_benchmark)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--sequence", help="the wild-type sequence")
    p.add_argument("--fasta", help="a FASTA file holding the wild type (one record)")
    p.add_argument("--structure", help="structure-aware models (SaProt): a PDB/mmCIF file of the wild type, read into "
                   "Foldseek 3Di letters (without --sequence/--fasta, its chain's sequence is the wild type)")
    p.add_argument("--chain", help="with --structure: the chain to read (needed when the file holds several)")
    p.add_argument("--structure-tokens", help="the structure tokens themselves, one per residue (or a file holding "
                   "them): SaProt's 3Di string (# where unknown), or ProSST's whole numbers from its own quantizer")
    _run_options(p)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scoring", default="masked_marginal", choices=["masked_marginal", "wt_marginal", "pll"],
                   help=SCORING_HELP)
    p.add_argument("--max-tokens", type=int, help="padded tokens per batch of masked copies (default 2048 on a CPU, "
                   "16384 on a GPU)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="forward passes in bf16/fp16: refused where the device does not run them natively")
    p.add_argument("--force-precision", action="store_true", help="keep bf16/fp16 where it is emulated (slow)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow models whose code lives in their repository")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _scan(args: argparse.Namespace) -> int:
    from plmforge.mutate import scan

    result = scan(args.model, args.sequence, args.fasta, positions=args.positions, scoring=args.scoring,
                  out=args.out, top=args.top, max_tokens=args.max_tokens, overwrite=args.overwrite,
                  resume=args.resume, progress=not args.no_progress, trust_remote_code=args.trust_remote_code,
                  precision=args.precision, force_precision=args.force_precision, structure=args.structure,
                  chain=args.chain, structure_tokens=args.structure_tokens)
    print(result.summary)
    print(f"written to {result.out_dir}: scan.csv, top.csv, heatmap.png, scan.json")
    return 0


def _score(args: argparse.Namespace) -> int:
    from plmforge.mutate import score

    result = score(args.model, args.mutations, args.sequence, args.fasta, scoring=args.scoring, out=args.out,
                   overwrite=args.overwrite, resamples=args.bootstrap, max_tokens=args.max_tokens,
                   progress=not args.no_progress, trust_remote_code=args.trust_remote_code,
                   precision=args.precision, force_precision=args.force_precision, structure=args.structure,
                   chain=args.chain, structure_tokens=args.structure_tokens)
    print(result.summary)
    if result.written:
        print("written: " + ", ".join(str(p) for p in result.written))
    else:
        print(result.table.to_csv(index=False, float_format="%.6g"), end="")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from plmforge.mutate.benchmark import benchmark

    result = benchmark(args.model, args.proteingym, args.out, reference=args.reference, scoring=args.scoring,
                       overwrite=args.overwrite, resume=args.resume, max_tokens=args.max_tokens,
                       progress=not args.no_progress, trust_remote_code=args.trust_remote_code,
                       precision=args.precision, force_precision=args.force_precision, structures=args.structures)
    print(result.by_assay.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(result.text)
    return 0
