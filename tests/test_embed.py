"""`plmforge embed`: ids kept distinct, mean and per-residue shapes, values equal to the backbone's own
output, layers, resumable through the store, bf16 checked against fp32, and 2 processes sharing the work."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import free_port

from plmforge.cli import main
from plmforge.config import ModelConfig
from plmforge.embed import EmbedOptions, embed
from plmforge.errors import ConfigError
from plmforge.models.backbone import load_backbone
from plmforge.store import store_infos

FASTA = ">a desc\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nGLFDIVKKVVGALGSL\n>a\nKWKLFKKIGAVLKVL\n>c\n" + "M" * 140 + "\n"


def _direct(model_dir, seq: str, limit: int = 126) -> np.ndarray:
    """The backbone's last hidden state for one sequence alone, residue tokens only."""
    bb = load_backbone(ModelConfig(name=str(model_dir)))
    enc = bb.tokenizer([seq[:limit]], return_tensors="pt")
    with torch.no_grad():
        states = bb.model(**enc).last_hidden_state[0]
    return states[1:-1].numpy()  # ESM: <cls> residues <eos>


def test_mean_and_per_residue_embeddings_keyed_by_id(tiny_models, tmp_path):
    (tmp_path / "in.fasta").write_text(FASTA)
    store = tmp_path / "store"
    out = tmp_path / "mean.h5"
    assert main(["embed", "--model", str(tiny_models["esm"]), "--input", str(tmp_path / "in.fasta"), "--out", str(out),
                 "--cache-dir", str(store)]) == 0
    with h5py.File(out) as fh:
        assert sorted(fh) == ["a", "a#2", "b", "c"]  # the repeated id keeps its own entry
        assert fh["a#2"].attrs["original_id"] == "a" and fh["c"].attrs["sequence_length"] == 140
        assert fh.attrs["layer"] == -1 and fh.attrs["pooling"] == "mean over residues" and fh.attrs["max_residues"] == 126
        np.testing.assert_allclose(fh["b"][()], _direct(tiny_models["esm"], "GLFDIVKKVVGALGSL").mean(0), atol=1e-5)
    per = embed(str(tiny_models["esm"]), tmp_path / "in.fasta", EmbedOptions(per_residue=True, cache_dir=str(store)))
    arrays = per.as_dict()
    assert arrays["b"].shape == (16, 64) and arrays["c"].shape == (126, 64)  # truncated to the model's limit
    np.testing.assert_allclose(arrays["a#2"], _direct(tiny_models["esm"], "KWKLFKKIGAVLKVL"), atol=1e-5)
    assert main(["embed", "--model", str(tiny_models["esm"]), "--input", str(tmp_path / "in.fasta"), "--out", str(out),
                 "--cache-dir", str(store)]) == 2  # never overwrites without --overwrite


def test_embedding_is_resumable_through_the_store_and_layers_differ(tiny_models, tmp_path, amp_dir):
    seqs = {f"s{i}": s for i, s in enumerate(pd.read_csv(amp_dir / "test.csv")["aa_seq"].head(40))}
    store = tmp_path / "store"
    first = embed(str(tiny_models["esm"]), seqs, EmbedOptions(cache_dir=str(store)))
    [info] = store_infos(store)
    shards = set((store / info.digest).glob("shard-*.h5"))
    again = embed(str(tiny_models["esm"]), seqs, EmbedOptions(cache_dir=str(store)))
    assert set((store / info.digest).glob("shard-*.h5")) == shards  # nothing computed again
    np.testing.assert_array_equal(np.stack(first.arrays), np.stack(again.arrays))
    layer0 = embed(str(tiny_models["esm"]), seqs, EmbedOptions(layer=0, cache_dir=str(store)))
    assert not np.allclose(np.stack(layer0.arrays), np.stack(first.arrays))
    with pytest.raises(ConfigError, match="--layer 7 does not exist: the model has hidden states 0..2"):
        embed(str(tiny_models["esm"]), seqs, EmbedOptions(layer=7, cache_dir=str(tmp_path / "other")))


@pytest.mark.pretrained
def test_bf16_embeddings_match_fp32_on_real_sequences(tmp_path, amp_dir):
    seqs = list(pd.read_csv(amp_dir / "test.csv")["aa_seq"].head(48))
    fp32 = np.stack(embed("antiberty", seqs, EmbedOptions(cache_dir=str(tmp_path))).arrays)
    # forced: the numerics are checked on every CPU (where bf16 is emulated, the refusal is test_precision's)
    bf16 = np.stack(embed("antiberty", seqs, EmbedOptions(precision="bf16", cache_dir=str(tmp_path),
                                                          force_precision=True)).arrays)
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    assert not np.array_equal(fp32, bf16)  # really computed in bf16


def test_two_processes_share_the_work_without_duplicates_or_gaps(tiny_models, tmp_path, amp_dir):
    df = pd.read_csv(amp_dir / "test.csv").head(60)
    df.to_csv(tmp_path / "in.csv", index=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "plmforge.cli", "embed", "--model", str(tiny_models["esm"]), "--input", str(tmp_path / "in.csv"),
           "--out", str(tmp_path / "two.h5"), "--cache-dir", str(tmp_path / "store2"), "--max-tokens", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = embed(str(tiny_models["esm"]), tmp_path / "in.csv", EmbedOptions(cache_dir=str(tmp_path / "store1")))
    with h5py.File(tmp_path / "two.h5") as fh:
        assert sorted(fh) == sorted(one.ids) and len(fh) == 60
        for name, arr in one.as_dict().items():
            np.testing.assert_allclose(fh[name][()], arr, atol=1e-5)
    [info] = store_infos(tmp_path / "store2")
    assert info.entries == df["aa_seq"].nunique() and len(list((tmp_path / "store2" / info.digest).glob("*.h5"))) == 2


def test_ctrl_c_keeps_what_was_embedded_and_the_rerun_computes_only_the_rest(tiny_models, tmp_path, amp_dir,
                                                                              monkeypatch, capsys):
    """Issue 25, finding 6: an interrupted `plmforge embed` keeps every computed vector (proven by counting
    what the rerun computes) and says how to continue."""
    import plmforge.embed as emb

    seqs = pd.read_csv(amp_dir / "test.csv")["aa_seq"].head(60)
    (tmp_path / "in.fasta").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(seqs)))
    computed: list[int] = []
    real = emb._layer_states

    def counting(model, inputs, mask, layer):
        computed.append(int(mask.shape[0]))
        if len(computed) == 3 and stop:  # Ctrl-C in the middle of the run
            raise KeyboardInterrupt
        return real(model, inputs, mask, layer)

    monkeypatch.setattr(emb, "_layer_states", counting)
    argv = ["embed", "--model", str(tiny_models["esm"]), "--input", str(tmp_path / "in.fasta"), "--out",
            str(tmp_path / "e.h5"), "--cache-dir", str(tmp_path / "store"), "--max-tokens", "256"]
    stop = True
    assert main(argv) == 130
    err = capsys.readouterr().err
    kept = sum(computed[:2])
    assert f"{kept} of {len(set(seqs))} distinct sequences are kept" in err and "plmforge embed command again" in err
    assert "train --resume" not in err and not (tmp_path / "e.h5").exists()
    computed.clear()
    stop = False
    assert main(argv) == 0
    assert sum(computed) == len(set(seqs)) - kept  # only what was missing


def test_kill_9_while_embedding_loses_at_most_the_unflushed_part(tiny_models, tmp_path, amp_dir):
    """Issue 25, finding 6: the store is written while embedding (here after every batch), so a kill -9
    keeps what was written; the rerun computes exactly the rest (counted from the store)."""
    import signal
    import time

    from plmforge.store import store_infos

    seqs = pd.read_csv(amp_dir / "train.csv")["aa_seq"].head(600)
    (tmp_path / "in.fasta").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(seqs)))
    store = tmp_path / "store"
    argv = [sys.executable, "-m", "plmforge.cli", "embed", "--model", str(tiny_models["esm"]), "--input",
            str(tmp_path / "in.fasta"), "--out", str(tmp_path / "e.h5"), "--cache-dir", str(store),
            "--max-tokens", "64"]
    proc = subprocess.Popen(argv, env={**os.environ, "PLMFORGE_EMBED_FLUSH_SECONDS": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 120
    while time.time() < end and proc.poll() is None:
        if store.is_dir() and sum(i.entries for i in store_infos(store)) >= 50:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "embedding ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = sum(i.entries for i in store_infos(store))
    distinct = len(set(seqs))
    assert 0 < kept < distinct and not (tmp_path / "e.h5").exists()
    import plmforge.embed as emb

    computed: list[int] = []
    real = emb._layer_states

    def counting(model, inputs, mask, layer):
        computed.append(int(mask.shape[0]))
        return real(model, inputs, mask, layer)

    emb._layer_states = counting
    try:
        assert main(argv[3:]) == 0
    finally:
        emb._layer_states = real
    assert sum(computed) == distinct - kept
