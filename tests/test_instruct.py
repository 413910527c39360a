"""The protein-to-text instruction model on a tiny ESM encoder and a tiny LLaMA decoder whose tokenizer
is built here (nothing is downloaded); fragment data made from the real paratope spans of
../shared/data/paratope."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared
from safetensors.torch import load_file

from plmforge.cli import main
from plmforge.errors import ConfigError, DataError, RunDirError
from plmforge.instruct.config import load_instruct_config
from plmforge.instruct.data import (
    FRAGMENT_TOKEN,
    IGNORE,
    PROTEIN_TOKEN,
    Example,
    crop,
    load_examples,
    parse_spans,
    to_example,
)
from plmforge.instruct.run import WEIGHTS, build, collator, features, generate, load_instruct, train_instruct
from plmforge.instruct.scores import class_scores, span_scores, text_scores


def runs(labels: str) -> list[tuple[int, int]]:
    out, start = [], None
    for i, c in enumerate(labels + "N"):
        if c == "P" and start is None:
            start = i
        elif c != "P" and start is not None:
            out.append((start, i))
            start = None
    return out


def describe(seq: str, span: tuple[int, int], kind: str) -> str:
    s, e = span
    common = "".join(c for c, _ in Counter(seq[s:e]).most_common(2))
    return f"a {e - s} residue {kind} segment rich in {common}"


def paratope_records(split: str, n: int, seed: int = 0) -> list[dict]:
    """Fragment tasks from real antibody chains and their paratope labels (P/N per residue)."""
    df = pd.read_parquet(shared("paratope", f"sabdab_{split}.parquet")).head(n)
    rng = np.random.default_rng(seed)
    out = []
    for seq, labels in zip(df["sequence"], df["paratope_labels"], strict=True):
        labels = "".join(labels)
        spans = runs(labels)
        if not spans:
            continue
        longest = max(spans, key=lambda s: s[1] - s[0])
        if spans[-1][1] - spans[0][0] <= 100:  # the spans must fit in the 100 residues the tests take
            out.append({"sequence": seq, "task": "grounding_group", "question": "which residues bind the antigen",
                        "position_grd": [list(s) for s in spans]})
        out.append({"sequence": seq, "task": "grounding_single", "question": "where is the longest paratope segment",
                    "position_grd": [list(longest)]})
        width = longest[1] - longest[0]
        free = [i for i in range(len(seq) - width) if all(c == "N" for c in labels[i:i + width])]
        frag, kind = (longest, "paratope") if rng.random() < 0.5 or not free else \
            ((int(f := rng.choice(free)), int(f) + width), "framework")
        out.append({"sequence": seq, "task": "referring_class", "answer": kind,
                    "conversation": [{"role": "user", "content": "what kind of fragment is this <fragment>"}],
                    "position_ref": list(frag)})
        out.append({"sequence": seq, "task": "referring_desc", "answer": describe(seq, frag, kind),
                    "question": "describe the fragment", "position_ref": list(frag)})
    return out


@pytest.fixture(scope="module")
def fragments(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fragments")
    for split, n, fmt in (("train", 24, "jsonl"), ("val", 6, "json"), ("test", 6, "csv")):
        recs = paratope_records(split, n)
        if fmt == "jsonl":
            (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        elif fmt == "json":
            (d / f"{split}.json").write_text(json.dumps(recs))
        else:
            pd.DataFrame([{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in recs]).to_csv(
                d / f"{split}.csv", index=False)
    return d


def _config(tiny_models, tiny_llama, fragments, out, *extra):
    return load_instruct_config(None, [
        f"model.encoder={tiny_models['esm']}", f"model.decoder={tiny_llama}", "model.adapter_hidden=48",
        "model.perceiver_latents=2", "model.perceiver_layers=1", "model.perceiver_heads=4",
        "model.max_sequence_length=100", f"data.train={fragments / 'train.jsonl'}",
        f"data.validation={fragments / 'val.json'}", f"data.test={fragments / 'test.csv'}", "lora.rank=4",
        "lora.alpha=8", "lora.dropout=0.0", f"training.output_dir={out}", "training.per_device_train_batch_size=4",
        "training.learning_rate=0.003", "training.logging_steps=1", "training.max_new_tokens=16", *extra])


pytestmark = pytest.mark.shared_data


def test_positions_are_checked_and_long_sequences_cropped_around_the_fragment():
    seq = "M" * 50 + "ACDEFG" + "K" * 100
    ex = to_example({"sequence": seq, "question": "q", "answer": "a", "position_ref": [50, 56]}, "f, record 3",
                    "referring_desc", 40)
    assert len(ex.sequence) == 40 and ex.sequence[ex.ref[0]:ex.ref[1]] == "ACDEFG" and ex.start == 50 - ex.ref[0]
    with pytest.raises(DataError, match=r"f, record 3.*position_ref \[10, 400\) is outside the 156-residue"):
        to_example({"sequence": seq, "question": "q", "answer": "a", "position_ref": [10, 400]}, "f, record 3",
                   "referring_desc", 500)
    with pytest.raises(DataError, match="needs position_grd"):
        to_example({"sequence": seq, "question": "q"}, "r", "grounding_group", 500)
    with pytest.raises(DataError, match="names spans"):
        to_example({"sequence": seq, "question": "q", "answer": "[1, 3)", "position_grd": [[2, 5]]}, "r",
                   "grounding_single", 500)
    g = to_example({"sequence": seq, "question": "q", "position_grd": [[60, 70], [100, 110]]}, "r", "grounding_group", 80)
    assert g.answer == format_shifted(g) and parse_spans(g.answer) == g.grd
    assert all(g.sequence[s:e] == seq[s + g.start:e + g.start] for s, e in g.grd)
    with pytest.raises(DataError, match="more than model.max_sequence_length=30"):
        crop(Example(seq, [], "", "grounding_group", None, [(0, 10), (100, 110)], 0, "r"), 30)


def format_shifted(ex: Example) -> str:
    return "; ".join(f"[{s}, {e})" for s, e in ex.grd)


def test_prompt_labels_and_splicing(tiny_models, tiny_llama, fragments, tmp_path):
    built = build(_config(tiny_models, tiny_llama, fragments, tmp_path / "run"))
    examples = load_examples(fragments / "train.jsonl", "referring_desc", 100)[:4]
    items = features(built, examples)
    tok = built.tokenizer
    for ex, f in zip(examples, items, strict=True):
        ids = f.input_ids.tolist()
        assert ids.count(tok.convert_tokens_to_ids(PROTEIN_TOKEN)) == len(ex.sequence) == f.residues.sum()
        n_frag = ids.count(tok.convert_tokens_to_ids(FRAGMENT_TOKEN))
        assert n_frag == (2 if ex.ref else 0) and f.fragment.sum() == (ex.ref[1] - ex.ref[0] if ex.ref else 0)
        supervised = [t for t, lab in zip(ids, f.labels, strict=True) if lab != IGNORE]
        assert tok.decode(supervised) == ex.answer + tok.eos_token  # only the answer and EOS
        assert f.labels[: len(ids) - len(supervised)].tolist() == [IGNORE] * (len(ids) - len(supervised))
        assert tok.decode(ids).startswith("<s>user: Protein: ")  # the chat template was used
    batch = collator(built)(items)
    model = built.model.eval()
    with torch.no_grad():
        emb = model.embed(batch["input_ids"], batch["protein_ids"], batch["protein_mask"], batch["residue_mask"],
                          batch["fragment_mask"])
        states = model.protein_states(batch["protein_ids"], batch["protein_mask"])
        latents = model.perceiver(states, batch["fragment_mask"])
    for b in range(len(items)):
        slots = batch["input_ids"][b] == model.protein_token_id
        torch.testing.assert_close(emb[b][slots], states[b][batch["residue_mask"][b]])  # one state per placeholder
        fslots = batch["input_ids"][b] == model.fragment_token_id
        if fslots.any():
            torch.testing.assert_close(emb[b][fslots], latents[b])
        other = ~(slots | fslots) & (batch["attention_mask"][b] == 1)
        torch.testing.assert_close(emb[b][other], model.decoder.get_input_embeddings()(batch["input_ids"][b][other]))
    # the fragment latents depend only on the fragment's residues
    moved = batch["fragment_mask"].clone()
    b = next(i for i in range(len(items)) if items[i].fragment.any())
    moved[b] = torch.roll(moved[b], 3)
    with torch.no_grad():
        assert not torch.allclose(model.perceiver(states, moved)[b], latents[b])


def test_training_reduces_the_loss_and_resume_restores_everything(tiny_models, tiny_llama, fragments, tmp_path):
    extra = ["training.max_steps=8", "training.save_strategy=steps", "training.save_steps=4",
             "training.eval_strategy=no", "training.save_total_limit=3"]
    whole = train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "whole", *extra))
    losses = [h["loss"] for h in whole.log_history if "loss" in h]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    saved = load_file(str(whole.run_dir / "checkpoint-4" / WEIGHTS))
    assert any(k.startswith("adapter.") for k in saved) and any(k.startswith("perceiver.") for k in saved)
    assert any("lora_" in k for k in saved) and not any(k.startswith("encoder.") for k in saved)
    assert (whole.run_dir / "checkpoint-4" / "adapter" / "adapter_config.json").is_file()  # peft layout
    assert (whole.run_dir / "checkpoint-4" / "optimizer.pt").is_file()
    # every file of a checkpoint is recorded with its sha256, the record written last
    record = json.loads((whole.run_dir / "checkpoint-4" / "checksums.json").read_text())
    assert {WEIGHTS, "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= set(record)
    # a second run resumes from the first one's step-4 checkpoint and ends where the first one ended; its
    # step-8 checkpoint lacks the record (as when a kill falls inside the Trainer's write), so is passed over
    cut = tmp_path / "cut"
    cut.mkdir()
    for part in ("checkpoint-4", "checkpoint-8", "tokenizer"):
        shutil.copytree(whole.run_dir / part, cut / part)
    (cut / "checkpoint-8" / "checksums.json").unlink()
    (cut / "checkpoint-8" / "optimizer.pt").write_bytes(b"cut short")
    shutil.copytree(cut, tmp_path / "damaged")
    resumed = train_instruct(_config(tiny_models, tiny_llama, fragments, cut, *extra,
                                     "training.resume_from_checkpoint=last"))
    a, b = load_file(str(whole.run_dir / "final" / WEIGHTS)), load_file(str(resumed.run_dir / "final" / WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    # the restored trainer state carries steps 1-4; steps 5-8 are new and equal the uninterrupted ones
    assert [h["loss"] for h in resumed.log_history if "loss" in h] == pytest.approx(losses, abs=1e-5)
    # Ctrl-C in the middle of step 3: the Trainer finishes the step, saves a sealed checkpoint-3 and stops;
    # resuming from it ends with the uninterrupted run's weights
    import os
    import signal

    from transformers import TrainerCallback

    class CtrlC(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt, match="stopped at step 3"):
        train_instruct(_config(tiny_models, tiny_llama, fragments, stopped, *extra), callbacks=[CtrlC()])
    assert (stopped / "checkpoint-3" / "checksums.json").is_file() and not (stopped / "final").exists()
    again = train_instruct(_config(tiny_models, tiny_llama, fragments, stopped, *extra,
                                   "training.resume_from_checkpoint=last"))
    assert [h["loss"] for h in again.log_history if "loss" in h] == pytest.approx(losses, abs=1e-5)
    c = load_file(str(stopped / "final" / WEIGHTS))
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=0)
    # a checkpoint file changed after it was written is refused before anything of it is loaded
    damaged = tmp_path / "damaged"
    shutil.rmtree(damaged / "checkpoint-8")
    blob = bytearray((damaged / "checkpoint-4" / "optimizer.pt").read_bytes())
    blob[-20] ^= 0xFF
    (damaged / "checkpoint-4" / "optimizer.pt").write_bytes(bytes(blob))
    with pytest.raises(RunDirError, match="optimizer.pt does not match the checksum"):
        train_instruct(_config(tiny_models, tiny_llama, fragments, damaged, *extra,
                               "training.resume_from_checkpoint=last"))
    assert whole.test_metrics is not None and "grounding_group/span_iou" in whole.test_metrics
    assert json.loads((whole.run_dir / "test_metrics.json").read_text()) == whole.test_metrics
    n_test = len(load_examples(fragments / "test.csv", "referring_desc", 100))
    assert len(pd.read_csv(whole.run_dir / "test_predictions.csv")) == n_test


def test_generation_returns_text_and_the_cli_works(tiny_models, tiny_llama, fragments, tmp_path, capsys):
    cfg = tmp_path / "instruct.yaml"
    cfg.write_text(json.dumps({"model": {"encoder": str(tiny_models["esm"]), "decoder": str(tiny_llama),
                                         "adapter_hidden": 48, "perceiver_layers": 1, "perceiver_heads": 4,
                                         "max_sequence_length": 100},
                               "data": {"train": str(fragments / "train.jsonl"), "max_samples": 8},
                               "lora": {"rank": 4, "alpha": 8}}))
    out = tmp_path / "run"
    assert main(["instruct", "train", "--config", str(cfg), f"training.output_dir={out}", "training.max_steps=2",
                 "training.save_strategy=no"]) == 0
    built = load_instruct(out)
    examples = load_examples(fragments / "test.csv", "referring_desc", 100)[:3]
    first = generate(built, examples, max_new_tokens=8)
    assert len(first) == 3 and all(isinstance(a, str) for a in first)
    assert generate(built, examples, max_new_tokens=8) == first  # greedy is deterministic
    sampled = generate(built, examples, max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.9)
    assert len(sampled) == 3
    capsys.readouterr()
    seq = examples[0].sequence
    assert main(["instruct", "generate", str(out), "--sequence", seq, "--question", "describe the fragment",
                 "--fragment", "3-9", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.startswith("answer:")
    assert main(["instruct", "generate", str(out), "--sequence", seq, "--question", "q", "--fragment", "9-3"]) != 0
    assert "START-END" in capsys.readouterr().err
    pred = tmp_path / "pred.csv"
    assert main(["instruct", "generate", str(out), "--input", str(fragments / "test.csv"), "--output", str(pred),
                 "--max-new-tokens", "4"]) == 0
    assert len(pd.read_csv(pred)) == len(load_examples(fragments / "test.csv", "referring_desc", 100))
    assert "grounding_group/span_iou" in capsys.readouterr().out  # labelled records are scored
    # new questions, without answers or spans: answered, not scored
    fresh = tmp_path / "questions.jsonl"
    fresh.write_text(json.dumps({"sequence": seq, "question": "describe the fragment", "position_ref": [2, 8],
                                 "task": "referring_desc"}) + "\n" +
                     json.dumps({"sequence": seq, "question": "which residues bind the antigen",
                                 "task": "grounding_group"}) + "\n")
    assert main(["instruct", "generate", str(out), "--input", str(fresh), "--output", str(tmp_path / "a.csv"),
                 "--max-new-tokens", "4"]) == 0
    assert "wrote 2 answers" in (text := capsys.readouterr().out) and "span_iou" not in text
    assert len(pd.read_csv(tmp_path / "a.csv")) == 2


def test_a_two_stage_run_resumes_its_second_stage_from_the_finished_first(tiny_models, tiny_llama, fragments,
                                                                          tmp_path):
    extra = ["training.stage=align+instruct", "training.align_epochs=1", "training.max_steps=4",
             "training.save_strategy=steps", "training.save_steps=2", "training.eval_strategy=no", "data.test=null"]
    whole = train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "whole", *extra))
    n_train = len(load_examples(fragments / "train.jsonl", "referring_desc", 100))
    align_steps = [h for h in whole.log_history if h["stage"] == "align" and "loss" in h]
    assert len(align_steps) == -(-n_train // 4)  # the whole align epoch: max_steps is the instruct stage's
    cut = tmp_path / "cut"
    cut.mkdir()
    for part in ("tokenizer", "align", "checkpoint-2"):
        shutil.copytree(whole.run_dir / part, cut / part)
    resumed = train_instruct(_config(tiny_models, tiny_llama, fragments, cut, *extra,
                                     "training.resume_from_checkpoint=last"))
    assert {h["stage"] for h in resumed.log_history} == {"instruct"}  # align was not run again
    a, b = load_file(str(whole.run_dir / "final" / WEIGHTS)), load_file(str(cut / "final" / WEIGHTS))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_encoders_that_read_more_than_the_sequence_are_refused(tiny_models, tiny_llama, fragments, tmp_path):
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    d = tmp_path / "saprot"
    d.mkdir()
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"] + [a + b for a in "ACDEFGHIKLMNPQRSTVWYX"
                                                              for b in "acdefghiklmnpqrstvwy#"]
    (d / "vocab.txt").write_text("\n".join(vocab))
    EsmModel(EsmConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=130, pad_token_id=1),
             add_pooling_layer=False).save_pretrained(d)
    EsmTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    with pytest.raises(ConfigError, match="reads foldseek_seq besides the sequence"):
        build(load_instruct_config(None, [f"model.encoder={d}", f"model.decoder={tiny_llama}",
                                          f"data.train={fragments / 'train.jsonl'}"]))


def test_alignment_stage_trains_only_the_modality_adapter(tiny_models, tiny_llama, fragments, tmp_path):
    result = train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "run", "training.stage=align",
                                    "training.align_epochs=1", "training.eval_strategy=no",
                                    "training.save_strategy=no", "data.test=null"))
    weights = load_file(str(result.run_dir / "final" / WEIGHTS))
    assert weights and all(k.startswith("adapter.") for k in weights)
    assert all(np.isfinite(h["loss"]) for h in result.log_history if "loss" in h)
    both = train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "both", "training.stage=align+instruct",
                                  "training.align_epochs=1", "training.max_steps=2", "training.eval_strategy=no",
                                  "training.save_strategy=no", "data.test=null"))
    assert {h["stage"] for h in both.log_history} == {"align", "instruct"}


def test_scores_match_hand_computed_cases():
    s = span_scores([[(0, 4)], [], [(2, 4), (6, 8)]], [[(2, 6)], [(0, 2)], [(2, 4), (6, 8)]])
    # record 1: P={0..3}, G={2..5}: IoU 2/6, precision 2/4, recall 2/4; record 2: nothing predicted
    assert s["span_iou"] == pytest.approx((2 / 6 + 0 + 1) / 3)
    assert s["span_precision"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["span_recall"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s["exact_spans"] == pytest.approx(1 / 3)
    c = class_scores(["Paratope.", "framework", "paratope", "framework"], ["paratope", "framework", "framework",
                                                                            "framework"])
    assert c["accuracy"] == 0.75
    assert c["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # paratope F1 = 2/3, framework F1 = 0.8
    assert c["mcc"] == pytest.approx(1 / 3 ** 0.5)
    t = text_scores(["a b c d e"], ["a b c d e"])
    assert t == {"bleu2": pytest.approx(1.0), "bleu4": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}
    t = text_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert t["rougeL"] == pytest.approx(5 / 6)  # LCS 5 of 6 tokens each way
    # BLEU-2: unigram precision 5/6, bigram precision 3/5, no brevity penalty
    assert t["bleu2"] == pytest.approx((5 / 6 * 3 / 5) ** 0.5)


def test_devices_and_options_are_checked(tiny_models, tiny_llama, fragments, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "a", "training.fp16=true",
                                   "training.max_steps=1"))
    # bf16 autocast runs on a CPU as on a GPU
    bf16 = train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "bf16", "training.bf16=true",
                                  "training.force_precision=true", "training.max_steps=2", "training.save_strategy=no", "training.eval_strategy=no",
                                  "data.test=null"))
    assert all(np.isfinite(h["loss"]) for h in bf16.log_history if "loss" in h)
    with pytest.raises(ConfigError, match=r"lora.target_modules: 'wq' matches no linear module of this model"):
        build(_config(tiny_models, tiny_llama, fragments, tmp_path / "b", "lora.target_modules=wq"))
    with pytest.raises(ConfigError, match="model.decoder is required"):
        load_instruct_config(None, ["data.train=x.jsonl"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "something").write_text("x")
    with pytest.raises(Exception, match="not a plmforge instruct run"):
        train_instruct(_config(tiny_models, tiny_llama, fragments, tmp_path / "c"))


def test_the_published_scale_recipe_is_a_valid_config():
    cfg = load_instruct_config(Path(__file__).resolve().parents[1] / "recipes" / "instruct" / "esm2_3b_llama31_8b.yaml")
    assert cfg.model.decoder == "meta-llama/Llama-3.1-8B-Instruct" and cfg.training.stage == "align+instruct"
    args = cfg.training
    assert (args.bf16, args.gradient_checkpointing, args.gradient_accumulation_steps) == (True, True, 8)


def pretrain_decoder(src: Path, dst: Path, texts: list[str], steps: int = 300) -> Path:
    """The tiny decoder after a short plain language-model training on the answers' language, standing in
    for a pretrained LLM (LoRA alone cannot teach a random decoder a vocabulary in a few minutes)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(src)
    model = LlamaForCausalLM.from_pretrained(src)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        batch = tok([f"{tok.bos_token}{texts[i]}{tok.eos_token}" for i in rng.integers(0, len(texts), 16)],
                    return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


@pytest.mark.e2e
@pytest.mark.pretrained
def test_paratope_fragment_tasks_end_to_end_with_antiberty(tiny_llama, tmp_path):
    """The real pretrained AntiBERTy encodes real antibody chains; a tiny decoder learns the four fragment
    tasks made from their paratope labels (70 chains to train, 14 to test). The numbers prove the
    pipeline, not the model: the published system uses ESM-2 and an 8B decoder on GPUs."""
    from plmforge.instruct.data import format_spans

    d = tmp_path / "data"
    d.mkdir()
    train = paratope_records("train", 70)
    for split, recs in (("train", train), ("test", paratope_records("test", 14))):
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    texts = [r.get("answer") or format_spans([tuple(g) for g in r["position_grd"]]) for r in train]
    decoder = pretrain_decoder(tiny_llama, tmp_path / "decoder", texts)
    result = train_instruct(load_instruct_config(None, [
        "model.encoder=antiberty", f"model.decoder={decoder}", "model.adapter_hidden=128",
        "model.perceiver_latents=2", "model.perceiver_layers=2", "model.perceiver_heads=4",
        "model.max_sequence_length=120", f"data.train={d / 'train.jsonl'}", f"data.test={d / 'test.jsonl'}",
        "lora.rank=16", "lora.alpha=32", "lora.target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        f"training.output_dir={tmp_path / 'run'}", "training.num_train_epochs=5",
        "training.per_device_train_batch_size=8", "training.learning_rate=0.003", "training.save_strategy=no",
        "training.eval_strategy=no", "training.logging_steps=10", "training.max_new_tokens=40"]))
    m = result.test_metrics
    print(json.dumps(m, indent=1))
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    for task in ("grounding_group", "grounding_single", "referring_class", "referring_desc"):
        assert m[f"{task}/n"] > 0
    answers = pd.read_csv(result.run_dir / "test_predictions.csv")
    grounding = answers[answers["task"].str.startswith("grounding")]
    assert grounding["answer"].map(lambda a: bool(parse_spans(str(a)))).mean() > 0.5  # spans come back parseable
    assert m["referring_desc/rougeL"] > 0.3  # the description template is learned
    # above chance: class answers correlate with the truth (MCC 0 is chance), and the grounded spans overlap
    # the truth more than spans of the same lengths placed at random (seeded) on the same chains
    assert m["referring_class/mcc"] > 0
    from plmforge.instruct.data import load_examples
    from plmforge.instruct.scores import score

    examples = load_examples(d / "test.jsonl", "description", 120)
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(20):
        answers = []
        for e in examples:
            spans = []
            for s0, e0 in e.grd:
                start = int(rng.integers(0, len(e.sequence) - (e0 - s0) + 1))
                spans.append((start, start + e0 - s0))
            answers.append(format_spans(spans) if spans else e.answer)
        chance.append(score(examples, answers))
    for task in ("grounding_group", "grounding_single"):
        random_iou = float(np.mean([c[f"{task}/span_iou"] for c in chance]))
        assert m[f"{task}/span_iou"] > random_iou, (task, m[f"{task}/span_iou"], random_iou)
