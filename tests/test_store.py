"""The persistent embedding store: exact round trips, atomic shards, resumable fills, fingerprints that
never return stale vectors, and frozen-backbone runs that compute each embedding once across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plmforge.cli import main
from plmforge.config import ModelConfig, load_config
from plmforge.models.backbone import backbone_fingerprint, load_backbone
from plmforge.store import EmbeddingStore, digest, record_key, store_infos, weights_signature
from plmforge.train.run import train

FP = {"source": "test", "stored": "tokens", "dtype": "float32"}


def test_entries_round_trip_exactly_and_are_stored_once(tmp_path):
    store = EmbeddingStore(tmp_path, FP)
    rng = np.random.default_rng(0)
    values = {record_key({"sequence": s}): rng.normal(size=(len(s) + 2, 8)).astype(np.float32)
              for s in ["MKTAY", "GLFDIVKKVV", "A"]}
    for k, v in values.items():
        store.put(k, v)
    store.put(next(iter(values)), np.zeros((7, 8), dtype=np.float32))  # already there: ignored
    assert len(store) == 3 and store.computed == 3
    store.flush()
    again = EmbeddingStore(tmp_path, FP)
    assert len(again) == 3
    for k, v in values.items():
        np.testing.assert_array_equal(again.get(k), v)
    assert record_key({"sequence": "MKTAY"}) != record_key({"sequence": "MKTAY", "foldseek": "ddddd"})


def test_an_interrupted_fill_leaves_no_broken_or_duplicate_entries(tmp_path):
    store = EmbeddingStore(tmp_path, FP)
    store.put("a", np.ones((3, 4), dtype=np.float32))
    store.flush()  # one complete shard
    store.put("b", np.ones((3, 4), dtype=np.float32))  # killed before its flush: never written
    (store.dir / "shard-killed.h5.tmp").write_bytes(b"half a shard")  # a write cut off mid-way
    resumed = EmbeddingStore(tmp_path, FP)
    assert "a" in resumed and "b" not in resumed
    for key in ("a", "b", "c"):
        resumed.put(key, np.full((2, 4), 2.0, dtype=np.float32))
    resumed.flush()
    assert resumed.computed == 2  # only what was missing
    info = store_infos(tmp_path)[0]
    assert info.entries == 3 and info.incomplete_files == 1  # every key once; the cut-off file is ignored


def test_the_index_finds_every_key_of_many_shards_and_the_first_shard_wins(tmp_path):
    """The index is sorted key bytes and int64 positions (about 50 bytes an entry, for stores of millions):
    keys from many shards, written by two processes with one key in common, are all found; the key both
    stored is read from the shard that sorts first; an absent key is absent."""
    from plmforge.store import _Index

    a, b, c = EmbeddingStore(tmp_path, FP, flush_mb=0), EmbeddingStore(tmp_path, FP), EmbeddingStore(tmp_path, FP)
    keys = [record_key({"sequence": str(i)}) for i in range(300)]
    c.put(keys[0], np.full((1, 4), -1, dtype=np.float32))  # pending in c while a stores it
    for i, key in enumerate(keys[:200]):  # flush_mb=0: a shard per entry
        a.put(key, np.full((1, 4), i, dtype=np.float32))
    for key in [keys[150], *keys[200:]]:  # b did not see a's shards: keys[150] is stored twice
        b.put(key.encode(), np.full((1, 4), 1000 + keys.index(key), dtype=np.float32))
    b.flush()
    c.refresh()  # now c's index holds a's keys[0]: its own pending copy is written but not indexed
    c.flush()
    assert c.get(keys[0])[0, 0] == 0 and len(c) == 300
    c_shard = c.index.shards[-1].path
    c_shard.unlink()  # (keep the count below simple)
    store = EmbeddingStore(tmp_path, FP)
    assert len(store) == 300 and len(store.index.shards) == 201
    paths = sorted(store.dir.glob("shard-*.h5"))
    a_first = paths.index(a.index.find(keys[150].encode())[0].path) < paths.index(b.index.shards[-1].path)
    for i, key in enumerate(keys):
        want = (150 if a_first else 1150) if i == 150 else (i if i < 200 else 1000 + i)
        assert store.get(key)[0, 0] == want and key.encode() in store
    assert record_key({"sequence": "absent"}) not in store
    with pytest.raises(KeyError):
        store.get("absent")
    assert _Index().find(b"x") is None and len(_Index()) == 0


def test_fingerprints_change_with_what_changes_the_output(tiny_models, tmp_path):
    bb = load_backbone(ModelConfig(name=str(tiny_models["esm"])))
    short = load_backbone(ModelConfig(name=str(tiny_models["esm"]), max_length=20))
    base = backbone_fingerprint(bb, "mean", "float32")
    assert digest(base) == digest(backbone_fingerprint(bb, "mean", "float32"))
    others = [backbone_fingerprint(short, "mean", "float32"), backbone_fingerprint(bb, "tokens", "float32"),
              backbone_fingerprint(bb, "mean", "float16"), backbone_fingerprint(bb, "mean", "float32", layer=1),
              backbone_fingerprint(load_backbone(ModelConfig(name=str(tiny_models["bert"]))), "mean", "float32")]
    assert len({digest(base), *map(digest, others)}) == 6
    import shutil

    copy = tmp_path / "esm"
    shutil.copytree(tiny_models["esm"], copy)
    assert weights_signature(str(copy)) == weights_signature(str(tiny_models["esm"]))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight
    weights.write_bytes(bytes(data))
    assert weights_signature(str(copy)) != weights_signature(str(tiny_models["esm"]))


def _freeze(tmp_path, tiny_models, data, store_dir, out, *extra):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}", "method.name=freeze",
                              "data.problem_type=single_label_classification", "data.num_labels=2",
                              "training.epochs=3", "training.learning_rate=0.003", f"method.cache_dir={store_dir}",
                              f"output.dir={tmp_path / out}", *extra])


@pytest.mark.parametrize("pooling, stored", [("mean", "mean"), ("attention1d", "tokens")])
def test_frozen_runs_compute_each_embedding_once_across_runs(tmp_path, tiny_models, amp_small, pooling, stored):
    store_dir = tmp_path / "store"
    # no dropout: the pass that fills the store draws random numbers (accelerate's loaders), which would
    # otherwise give the store-less run other dropout masks
    first = train(_freeze(tmp_path, tiny_models, amp_small, store_dir, "first", f"head.pooling={pooling}",
                          "head.dropout=0"))
    assert "computed 128 of 128 train/validation embeddings (0 read" in (first.run_dir / "train.log").read_text()
    [info] = store_infos(store_dir)
    assert info.fingerprint["stored"] == stored and info.entries == 160  # train, validation and test, once each
    second = train(_freeze(tmp_path, tiny_models, amp_small, store_dir, "second", f"head.pooling={pooling}",
                           "training.learning_rate=0.001", "head.dropout=0.3"))
    assert "computed 0 of 128 train/validation embeddings (128 read" in (second.run_dir / "train.log").read_text()
    # the stored vectors are the backbone's: a run without the store ends with the same model
    plain = train(_freeze(tmp_path, tiny_models, amp_small, store_dir, "plain", f"head.pooling={pooling}",
                          "head.dropout=0", "method.cache_embeddings=false"))
    assert plain.test_metrics["metrics"] == pytest.approx(first.test_metrics["metrics"], abs=1e-6)


def test_float16_store_and_the_cache_commands(tmp_path, tiny_models, amp_small, capsys):
    store_dir = tmp_path / "store"
    result = train(_freeze(tmp_path, tiny_models, amp_small, store_dir, "half", "method.cache_dtype=float16"))
    assert result.test_metrics is not None
    [info] = store_infos(store_dir)
    assert info.fingerprint["dtype"] == "float16"
    import h5py

    shard = next(Path(store_dir, info.digest).glob("shard-*.h5"))
    with h5py.File(shard) as fh:
        assert fh["values"].dtype == np.float16 and fh["values"].shape[1] == 64
    assert main(["cache", "info", "--dir", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert info.digest in out and "float16" in out and "160" in out
    assert main(["cache", "clear", "--dir", str(store_dir), "--model", "no-such-model"]) == 0
    assert store_infos(store_dir)
    capsys.readouterr()
    assert main(["cache", "clear", "--dir", str(store_dir)]) == 2  # not a terminal and no --yes: nothing goes
    assert "would delete 1" in capsys.readouterr().out and store_infos(store_dir)
    assert main(["cache", "clear", "--dir", str(store_dir), "--yes"]) == 0
    assert not store_infos(store_dir) and "removed 1" in capsys.readouterr().out


def test_the_weights_signature_reads_every_byte_and_remembers_file_hashes(tmp_path, monkeypatch):
    """Finding 5 of issue 25: a byte changed in the middle of a 5 MiB weight file changes the signature
    (the first and last MiB alone did not); the hashes are remembered by path, size, mtime and inode."""
    import os

    import plmforge.store as store

    monkeypatch.setenv("PLMFORGE_CACHE_DIR", str(tmp_path / "store"))
    model = tmp_path / "merged"
    model.mkdir()
    weights = model / "model.safetensors"
    data = bytearray(os.urandom(5 << 20))
    weights.write_bytes(bytes(data))
    first = weights_signature(str(model))
    assert (tmp_path / "store" / "file_hashes.json").is_file()
    stat = weights.stat()
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert weights_signature(str(model)) != first
    reads = []
    real_open = type(weights).open

    def counting(self, *a, **k):
        reads.append(self.name)
        return real_open(self, *a, **k)

    monkeypatch.setattr(type(weights), "open", counting)
    weights_signature(str(model))
    assert "model.safetensors" not in reads  # unchanged since: its hash is remembered
    assert store.weights_signature("owner/not-downloaded-model") == "hub:owner/not-downloaded-model"
