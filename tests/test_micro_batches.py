"""Micro-batches (batching.micro_batch_tokens, chosen by the memory plan on a CPU when a batch's activations
would not fit): a batch split into length-sorted parts, each part's loss weighted by its share of what the
loss averages over, gives the whole batch's loss and gradients — so a run with micro-batches equals the run
without them up to float rounding (tested with every dropout off, since the parts draw their own masks)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from plmforge.config import load_config
from plmforge.tasks.objective import Objective
from plmforge.train import loop
from plmforge.train.run import train
from conftest import RESIDUES, shared


@pytest.fixture(scope="module")
def quiet_esm(tmp_path_factory):
    """A tiny random ESM without dropout anywhere."""
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    d = tmp_path_factory.mktemp("quiet_esm")
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *RESIDUES, ".", "-", "<null_1>", "<mask>"]
    (d / "vocab.txt").write_text("\n".join(vocab))
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=160, pad_token_id=1, mask_token_id=len(vocab) - 1,
                    position_embedding_type="absolute", token_dropout=False, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(d)
    EsmTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    return d


def _run(tmp_path, name, model, micro, *extra, monkeypatch=None):
    split = []
    if monkeypatch is not None:  # count the batches that ran as several parts
        real = loop.micro_batches

        def counting(*args):
            parts = real(*args)
            if parts is not None:
                split.append(len(parts))
            return parts

        monkeypatch.setattr(loop, "micro_batches", counting)
    cfg = load_config(None, [f"model.name={model}", "method.name=lora", "method.dropout=0", "head.dropout=0",
                             "training.epochs=2", "batching.batch_size=16", f"batching.micro_batch_tokens={micro}",
                             f"output.dir={tmp_path / name}", "output.plots=false", *extra])
    result = train(cfg, progress=False)
    if monkeypatch is not None:
        monkeypatch.setattr(loop, "micro_batches", real)
    return result, split


def _same(a, b):
    assert [h["train_loss"] for h in a.fit.history] == pytest.approx([h["train_loss"] for h in b.fit.history],
                                                                     rel=1e-5)
    for name, value in a.test_metrics["metrics"].items():
        assert value == pytest.approx(b.test_metrics["metrics"][name], rel=1e-4, abs=1e-6), name


def test_micro_batches_equal_whole_batches_with_class_weights(tmp_path, amp_small, quiet_esm, monkeypatch):
    data = [f"data.dataset={amp_small}", "data.problem_type=single_label_classification",
            "training.class_weights=0.3,1.7"]  # weighted: each part's share is its summed class weights
    whole, _ = _run(tmp_path, "whole", quiet_esm, 0, *data)
    micro, split = _run(tmp_path, "micro", quiet_esm, 120, *data, monkeypatch=monkeypatch)
    assert split and max(split) >= 5  # 16 peptides of up to 52 tokens in parts of <= 120 tokens
    _same(micro, whole)
    import yaml

    assert yaml.safe_load((micro.run_dir / "config.yaml").read_text())["batching"]["micro_batch_tokens"] == 120


@pytest.mark.shared_data
def test_micro_batches_equal_whole_batches_per_residue(tmp_path, quiet_esm, monkeypatch):
    """Residue targets: parts are cut to their own width with their labels; the share is the residues
    that count (special tokens and padding excluded)."""
    d = tmp_path / "para"
    d.mkdir()
    for split, n in (("train", 32), ("validation", 8), ("test", 8)):
        src = "val" if split == "validation" else split
        pd.read_parquet(shared("paratope", f"sabdab_{src}.parquet")).head(n).to_parquet(d / f"{split}.parquet")
    data = [f"data.dataset={d}", "data.problem_type=residue_single_label_classification", "data.sequence_column=sequence",
            "data.label_column=paratope_labels", "data.residue_classes=N,P", "data.id_column=pdb"]
    whole, _ = _run(tmp_path, "whole", quiet_esm, 0, *data)
    micro, split = _run(tmp_path, "micro", quiet_esm, 400, *data, monkeypatch=monkeypatch)
    assert split and max(split) >= 4
    _same(micro, whole)


def test_loss_units_are_what_each_loss_averages_over():
    from plmforge.tasks.kinds import IGNORE

    logits = torch.randn(6, 3)
    t = torch.tensor([0, 2, IGNORE, 1, 1, 0])
    w = torch.tensor([0.5, 2.0, 1.0])
    objective = Objective("classes", w, None)
    whole = objective(logits, t)
    parts = [(slice(0, 2), objective.loss_units(t[:2])), (slice(2, 6), objective.loss_units(t[2:]))]
    assert objective.loss_units(t) == pytest.approx(0.5 + 1.0 + 2.0 + 2.0 + 0.5)
    combined = sum(objective(logits[s], t[s]) * u for s, u in parts) / objective.loss_units(t)
    assert float(combined) == pytest.approx(float(whole), rel=1e-6)
    y = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    assert Objective("multi_label", None, 2.0).loss_units(y) == 3
