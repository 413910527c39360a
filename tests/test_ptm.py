"""PTM-Mamba: the PTM-aware tokenizer, the selective scan, the bidirectional model and its training run
(on real dephosphorylation windows with the central phosphotyrosine written as a PTM token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import free_port, shared

from plmforge.checkpoint import load_file_checked, save_file_checked, sha256
from plmforge.errors import DataError, RunDirError
from plmforge.ptm.mamba import PtmMamba, reverse_within, selective_scan, selective_scan_reference
from plmforge.ptm.tokens import PtmTokenizer, sites_to_ptm_seq
from plmforge.ptm.train import load_ptm_config, mask_tokens, train_ptm


def test_tokenizer_round_trips_by_longest_match_and_names_errors():
    tok = PtmTokenizer.with_extra({"Phospho": "S"})  # a prefix of Phosphoserine: longest match must win
    text = "MK<Phosphoserine>PE<N-linked (GlcNAc...) asparagine>T<N6,N6,N6-trimethyllysine>K<Phospho>"
    tokens = tok.tokenize(text)
    assert tokens == ["M", "K", "<Phosphoserine>", "P", "E", "<N-linked (GlcNAc...) asparagine>", "T",
                      "<N6,N6,N6-trimethyllysine>", "K", "<Phospho>"]
    assert tok.decode(tok.encode(text)) == text
    assert tok.is_ptm(tok.encode(text)).sum() == 4
    with pytest.raises(DataError, match=r"data.csv, row 4.*unknown PTM token '<Phosphofoo>' at position 3"):
        tok.encode("MK<Phosphofoo>A", "data.csv, row 4")
    with pytest.raises(DataError, match=r"unknown character '1' at position 2"):
        tok.encode("M1K")
    with pytest.raises(ValueError, match="residue"):
        PtmTokenizer.with_extra({"Weird": "J"})


def test_site_table_becomes_ptm_sequences_with_residue_checks():
    sites = pd.DataFrame({"accession": ["P1", "P1", "P2"], "sequence": ["MSKYT", "MSKYT", "AKA"],
                          "position": [2, 4, 2], "modification": ["Phosphoserine", "Phosphotyrosine",
                                                                  "N6-acetyllysine"]})
    got = sites_to_ptm_seq(sites)
    assert got.to_dict("records") == [{"accession": "P1", "ptm_seq": "M<Phosphoserine>K<Phosphotyrosine>T"},
                                      {"accession": "P2", "ptm_seq": "A<N6-acetyllysine>A"}]
    bad = sites.assign(position=[3, 4, 2])
    with pytest.raises(DataError, match=r"row 2 \(accession P1, position 3\).*Phosphoserine modifies S, but residue 3 is K"):
        sites_to_ptm_seq(bad)
    with pytest.raises(DataError, match="outside the 3-residue"):
        sites_to_ptm_seq(sites.assign(position=[2, 4, 9]))


def test_the_chunked_scan_equals_the_step_by_step_recurrence():
    torch.manual_seed(0)
    b, length, d, n = 2, 77, 6, 4  # three chunks of 32, the last one partial
    x, B, C = torch.randn(b, length, d), torch.randn(b, length, n), torch.randn(b, length, n)
    dt = torch.nn.functional.softplus(torch.randn(b, length, d) * 2)  # up to large steps: no overflow allowed
    A, D = -torch.rand(d, n) * 8, torch.randn(d)
    torch.testing.assert_close(selective_scan(x, dt, A, B, C, D), selective_scan_reference(x, dt, A, B, C, D),
                               atol=1e-4, rtol=1e-4)


def test_padding_never_reaches_real_positions_and_reversal_swaps_directions():
    torch.manual_seed(0)
    model = PtmMamba(60, 32, 2, 8).eval()
    ids = torch.randint(5, 60, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[0, 12:] = 0
    out = model(ids, mask)[0, :12]
    torch.testing.assert_close(out, model(ids[:1, :12], mask[:1, :12])[0])
    other = ids.clone()
    other[0, 12:] = 7  # whatever sits in the padding
    torch.testing.assert_close(model(other, mask)[0, :12], out)
    # a real token late in the sequence does reach the first position (through the backward direction)
    changed = ids.clone()
    changed[0, 10] = (ids[0, 10] % 50) + 6
    assert not torch.allclose(model(changed, mask)[0, 0], out[0])
    # reversing the sequence and swapping the two blocks of every layer reverses the output
    layer = model.layers[0]
    h = torch.randn(1, 12, 32)
    m = torch.ones(1, 12)
    forward_out = layer(h, m)
    swapped = PtmMamba(60, 32, 1, 8).layers[0]
    swapped.load_state_dict(layer.state_dict())
    swapped.forward_block, swapped.backward_block = layer.backward_block, layer.forward_block
    with torch.no_grad():  # the fusion sees [forward, backward]: swap its two input halves too
        w = layer.fuse.weight
        swapped.fuse.weight.copy_(torch.cat([w[:, 32:], w[:, :32]], 1))
    lengths = torch.tensor([12])
    torch.testing.assert_close(reverse_within(swapped(reverse_within(h, lengths), m), lengths), forward_out,
                               atol=1e-5, rtol=1e-5)


def test_a_new_model_starts_near_a_uniform_guess_and_loading_replaces_its_init():
    """The reference Mamba LM's initialisation (embeddings N(0, 0.02^2), tied to the LM head): a freshly built
    model's first masked-LM loss is close to ln(vocab size), a uniform guess. With nn.Embedding's default
    N(0, 1) it was several times that (13 to 62 on this batch, against ln 70 = 4.25)."""
    import math

    from plmforge.ptm.mamba import MambaBlock

    tok = PtmTokenizer()
    uniform = math.log(len(tok))
    aa = [tok.index[a] for a in "ACDEFGHIKLMNPQRSTVWY"]
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor(aa)[torch.randint(0, 20, (16, 40), generator=gen)]
    ids[:, 20] = tok.index["<Phosphoserine>"]
    mask = torch.ones_like(ids)
    inputs, labels = mask_tokens(ids, mask, tok, 0.15, 0.5, gen)
    for seed, (d_model, layers, d_state) in enumerate([(16, 2, 4), (32, 2, 4), (64, 4, 8)]):
        torch.manual_seed(seed)
        model = PtmMamba(len(tok), d_model, layers, d_state)
        with torch.no_grad():
            logits = model(inputs, mask)
        loss = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100))
        assert abs(loss - uniform) < 0.25, (d_model, loss, uniform)  # measured within 0.1 of it
        assert model.head.weight is model.embed.weight and 0.015 < float(model.embed.weight.std()) < 0.025
        for block in model.modules():
            if isinstance(block, MambaBlock):  # dt_proj's bias keeps the dt initialisation, in [0.001, 0.1]
                dt = torch.nn.functional.softplus(block.dt_proj.bias)
                assert 0.0009 < float(dt.min()) and float(dt.max()) < 0.11
    # a loaded state dict replaces every initialised parameter: two models built from different seeds agree
    torch.manual_seed(1)
    trained = PtmMamba(len(tok), 16, 2, 4)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    torch.manual_seed(2)
    loaded = PtmMamba(len(tok), 16, 2, 4)
    loaded.load_state_dict(trained.state_dict())
    for (name, a), b in zip(trained.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.head.weight is loaded.embed.weight
    torch.testing.assert_close(loaded.eval()(ids, mask), trained.eval()(ids, mask))


def test_ptm_aware_masking_chooses_ptm_tokens_more_often():
    tok = PtmTokenizer()
    seq = tok.encode("AK<Phosphoserine>" * 400)
    ids, mask = torch.from_numpy(seq)[None], torch.ones(1, len(seq), dtype=torch.long)
    inputs, labels = mask_tokens(ids, mask, tok, 0.1, 0.6, torch.Generator().manual_seed(0))
    ptm = ids >= tok.first_ptm
    assert 0.55 < (labels[ptm] != -100).float().mean() < 0.65
    assert 0.07 < (labels[~ptm] != -100).float().mean() < 0.13
    assert (labels[labels != -100] == ids[labels != -100]).all()
    assert 0.75 < (inputs[labels != -100] == tok.mask_id).float().mean() < 0.85


def dephospho_table(out: Path) -> Path:
    """Real 33-residue windows around a tyrosine (position 17); the tyrosine written as <Phosphotyrosine>
    (every window is centred on a phosphosite)."""
    rows = []
    for split in ("train", "test"):
        name = ""
        for line in shared("dephospho", f"{split}_sequences.fasta").read_text().splitlines():
            if line.startswith(">"):
                name = line[1:].split()[0]
            elif line.strip():
                seq = line.strip()
                assert seq[16] == "Y"
                rows.append({"id": f"{split}:{name}", "ptm_seq": seq[:16] + "<Phosphotyrosine>" + seq[17:]})
    path = out / "dephospho_ptm.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


D_MODEL = 16  # small: the scan's cost grows with d_model x d_state, and no test here needs a bigger model


def _cfg(data: Path, out: Path, *extra: str):
    return load_ptm_config(None, [f"dataset.dataset_location={data}", "dataset.id_column_name=id",
                                  "dataset.val_size=25", "dataset.test_size=25", f"model.d_model={D_MODEL}",
                                  "model.n_layers=2", "model.d_state=4", f"training.output_dir={out}",
                                  "training.per_device_train_batch_size=16", "training.lr=0.003",
                                  "training.log_steps=5", *extra])


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The uninterrupted 3-epoch run on the real windows, trained once for this module: the resume test
    checks it and compares against it; the embedding and backbone tests work on copies of its directory."""
    tmp = tmp_path_factory.mktemp("ptm_whole")
    data = dephospho_table(tmp)
    return data, train_ptm(_cfg(data, tmp / "whole", "training.num_train_epochs=3"))


def _copy_of(run_dir: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, dst))


@pytest.mark.shared_data
def test_training_learns_resumes_exactly_and_writes_the_run(tmp_path, monkeypatch, whole_run):
    data, whole = whole_run
    rd = whole.run_dir
    for name in ("config.yaml", "split_mapping.json", "metrics.json", "best.ckpt", "last.ckpt"):
        assert (rd / name).is_file(), name
    split = json.loads((rd / "split_mapping.json").read_text())
    assert sorted(set(split.values())) == ["test", "train", "val"] and list(split.values()).count("val") == 25
    train = [m for m in whole.metrics if m["split"] == "train"]
    val = [m for m in whole.metrics if m["split"] == "val"]
    assert np.mean([m["loss"] for m in train[-5:]]) < np.mean([m["loss"] for m in train[:5]])
    assert val and all(m["masked_tokens"] > 25 * 33 * 0.1 for m in val)  # the whole validation set, every time
    assert whole.test is not None and whole.test["ptm_accuracy"] == whole.test["ptm_accuracy"]  # not NaN
    # Ctrl-C during a step in the middle of epoch 2: the step ends, last.ckpt is saved at it, and a resume
    # from it ends with the uninterrupted run's weights and validation losses
    import os
    import signal

    import plmforge.ptm.train as ptm_train

    stop_at = len(train) // 3 + 2  # inside the second epoch, not at a validation step (every 5 steps)
    stop_at += stop_at % 5 == 0
    calls = []
    step = ptm_train._train_step

    def ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGINT)
        return step(*args, **kwargs)

    monkeypatch.setattr(ptm_train, "_train_step", ctrl_c)
    with pytest.raises(KeyboardInterrupt, match=f"stopped at step {stop_at}"):
        train_ptm(_cfg(data, tmp_path / "stopped", "training.num_train_epochs=3"))
    monkeypatch.setattr(ptm_train, "_train_step", step)
    cut = tmp_path / "stopped" / "last.ckpt"
    assert torch.load(cut, weights_only=True)["step"] == stop_at
    resumed = train_ptm(_cfg(data, tmp_path / "stopped", "training.num_train_epochs=3",
                             f"training.resume_from_checkpoint={cut}"))
    a = torch.load(rd / "last.ckpt", weights_only=True)
    b = torch.load(resumed.run_dir / "last.ckpt", weights_only=True)
    assert a["step"] == b["step"] == len(train)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-5)
    later = {m["step"]: m["loss"] for m in whole.metrics if m["split"] == "val" and m["step"] > stop_at}
    again = {m["step"]: m["loss"] for m in resumed.metrics if m["split"] == "val" and m["step"] in later}
    assert later and again == pytest.approx(later, rel=1e-5)


@pytest.mark.shared_data
def test_two_processes_under_accelerate(tmp_path):
    data = dephospho_table(tmp_path)
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom plmforge.ptm.train import load_ptm_config, train_ptm\n"
        "train_ptm(load_ptm_config(None, sys.argv[1:]))\n")
    args = [f"dataset.dataset_location={data}", "dataset.id_column_name=id", "dataset.val_size=25",
            "dataset.test_size=25", "model.d_model=16", "model.n_layers=1", "model.d_state=4",
            f"training.output_dir={tmp_path / 'run'}", "training.num_train_epochs=1", "training.log_steps=3",
            "training.per_device_train_batch_size=16"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes=2", "--num_machines=1",
           f"--main_process_port={free_port()}", "--mixed_precision=no", "--dynamo_backend=no", "--cpu", str(script),
           *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    train_steps = [m["step"] for m in metrics if m["split"] == "train"]
    assert train_steps and train_steps == sorted(train_steps)
    assert any(m["split"] == "test" for m in metrics)


@pytest.mark.shared_data
def test_the_cli_trains_from_a_config_file(tmp_path, capsys):
    from plmforge.cli import main

    data = dephospho_table(tmp_path)
    cfg = tmp_path / "ptm.yaml"
    cfg.write_text(f"dataset:\n  dataset_location: {data.name}\n  id_column_name: id\n  val_size: 0.1\n"
                   "  test_size: 0.1\nmodel:\n  d_model: 16\n  n_layers: 1\n  d_state: 4\n"
                   f"training:\n  output_dir: {tmp_path / 'run'}\n  num_train_epochs: 1\n  log_steps: 4\n")
    assert main(["ptm", "train", "--config", str(cfg), "training.per_device_train_batch_size=32"]) == 0
    out = capsys.readouterr().out
    assert "test ptm_accuracy" in out and "test perplexity" in out
    assert main(["ptm", "train", "--config", str(cfg)]) != 0  # the run directory is not overwritten silently
    assert "already holds a PTM-Mamba run" in capsys.readouterr().err


@pytest.mark.shared_data
def test_a_trained_model_gives_per_token_embeddings(tmp_path, whole_run):
    from plmforge.ptm.train import load_ptm_model, ptm_embeddings

    data, whole = whole_run
    run = _copy_of(whole.run_dir, tmp_path / "run")  # a copy: this test damages its checkpoint
    model, tok = load_ptm_model(run)
    seqs = pd.read_csv(data)["ptm_seq"].head(5).tolist() + ["MK<Phosphoserine>"]
    embs = ptm_embeddings(model, tok, seqs, batch_size=4)
    assert [e.shape for e in embs] == [(len(tok.tokenize(s)), D_MODEL) for s in seqs]
    alone = ptm_embeddings(model, tok, seqs[-1:])[0]
    np.testing.assert_allclose(embs[-1], alone, atol=1e-5)  # the same alone as in a padded batch
    with pytest.raises(Exception, match="does not exist"):
        load_ptm_model(tmp_path / "nothing")
    # checkpoints carry checksums: a changed file is refused, a crafted pickle with a forged record never runs
    assert json.loads((run / "best.ckpt.sha256").read_text()) == [sha256(run / "best.ckpt")]
    blob = (run / "best.ckpt").read_bytes()
    (run / "best.ckpt").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(RunDirError, match="does not match the checksum"):
        load_ptm_model(run)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (run / "best.ckpt").write_bytes(pickle.dumps({"model": Evil()}))
    (run / "best.ckpt.sha256").write_text(json.dumps([sha256(run / "best.ckpt")]))
    with pytest.raises(RunDirError, match="cannot be read safely"):
        load_ptm_model(run)
    assert not marker.exists()


def test_a_single_file_checkpoint_matches_its_record_whatever_instant_a_kill_hits(tmp_path, monkeypatch):
    """save_file_checked: the record lists old and new during the swap, so a stop before or after the
    rename leaves a loadable file."""
    path = tmp_path / "last.ckpt"
    save_file_checked({"step": 1}, path)
    real = os.replace

    def stop_before_the_checkpoint_rename(src, dst):
        if str(dst) == str(path):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", stop_before_the_checkpoint_rename)
    with pytest.raises(KeyboardInterrupt):
        save_file_checked({"step": 2}, path)
    assert load_file_checked(path)["step"] == 1  # the old file, accepted by the two-entry record
    assert len(json.loads((tmp_path / "last.ckpt.sha256").read_text())) == 2
    calls = []

    def stop_after_the_checkpoint_rename(src, dst):
        real(src, dst)
        calls.append(dst)
        if str(dst) == str(path):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stop_after_the_checkpoint_rename)
    with pytest.raises(KeyboardInterrupt):
        save_file_checked({"step": 3}, path)
    assert load_file_checked(path)["step"] == 3  # the new file, also accepted
    monkeypatch.setattr(os, "replace", real)
    save_file_checked({"step": 4}, path)
    assert json.loads((tmp_path / "last.ckpt.sha256").read_text()) == [sha256(path)]


def test_plm_features_never_show_hidden_positions(tiny_models):
    from plmforge.ptm.train import PlmFeatures

    tok = PtmTokenizer()
    plm = PlmFeatures(str(tiny_models["esm"]), 100)
    a = torch.from_numpy(tok.encode("MKLVA<Phosphoserine>GHKLE"))[None]
    b = a.clone()
    b[0, 2] = tok.index["W"]  # differs at position 3 only
    mask = torch.ones_like(a)
    hide = torch.zeros_like(a, dtype=torch.bool)
    hide[0, 2] = True
    ptm = a >= tok.first_ptm
    torch.testing.assert_close(plm(a, mask, hide | ptm, tok), plm(b, mask, hide | ptm, tok))  # hidden: same
    assert not torch.allclose(plm(a, mask, ptm, tok), plm(b, mask, ptm, tok))  # shown: differs
    # a PTM position is fed as the mask token, whatever its parent residue
    c = a.clone()
    c[0, 5] = tok.index["<Phosphothreonine>"]
    torch.testing.assert_close(plm(a, mask, ptm, tok), plm(c, mask, c >= tok.first_ptm, tok))


@pytest.mark.shared_data
def test_training_with_gated_plm_fusion(tmp_path, tiny_models):
    from plmforge.ptm.train import load_ptm_model, ptm_embeddings

    data = dephospho_table(tmp_path)
    result = train_ptm(_cfg(data, tmp_path / "run", "training.num_train_epochs=1", "training.use_esm=true",
                            f"training.esm_model={tiny_models['esm']}", "training.max_length=100"))
    assert result.test is not None and np.isfinite(result.test["loss"])
    model, tok = load_ptm_model(result.run_dir)
    assert model.plm_proj is not None and model.plm_proj.in_features == 64
    [emb] = ptm_embeddings(model, tok, ["MK<Phosphoserine>AV"])
    assert emb.shape == (5, D_MODEL)


@pytest.mark.shared_data
def test_precomputed_plm_states_from_the_store(tmp_path, tiny_models, capsys):
    from plmforge.cli import main
    from plmforge.errors import ConfigError
    from plmforge.ptm.plm import PlmFeatures, StoredPlmFeatures, plm_input_key, store_for
    from plmforge.ptm.train import read_sequences

    data = dephospho_table(tmp_path)
    store_dir = tmp_path / "store"
    args = [f"dataset.dataset_location={data}", "dataset.id_column_name=id", "training.use_esm=true",
            f"training.esm_model={tiny_models['esm']}", "training.max_length=100", f"training.embeddings_dir={store_dir}"]
    cfg = _cfg(data, tmp_path / "run", "training.num_train_epochs=1", "training.use_precomputed_embeddings=true",
               *args[2:])
    with pytest.raises(DataError, match="(?s)no precomputed PLM states.*plmforge ptm embed"):
        train_ptm(cfg)  # nothing stored yet: says which command fills the store
    assert main(["ptm", "embed", *args]) == 0
    out = capsys.readouterr().out
    assert "251 sequences computed, 0 were already stored" in out
    assert main(["ptm", "embed", *args]) == 0
    assert "0 sequences computed, 251 were already stored" in capsys.readouterr().out  # a rerun reuses them
    # the stored states are the on-the-fly ones with only PTM positions hidden
    tok = PtmTokenizer()
    _, seqs = read_sequences(cfg.dataset, tok, 100)
    plm = PlmFeatures(str(tiny_models["esm"]), 100)
    store = store_for(plm, str(store_dir))
    ids, mask = torch.from_numpy(np.stack(seqs[:3])), torch.ones(3, 33, dtype=torch.long)
    live = plm(ids, mask, ids >= tok.first_ptm, tok)
    for r in range(3):
        np.testing.assert_allclose(store.get(plm_input_key(seqs[r], tok)), live[r].numpy(), atol=1e-5)
    # read back through the training path: MLM-hidden residues get no PLM state, PTM positions keep theirs
    stored = StoredPlmFeatures(plm, str(store_dir), seqs, tok, "embed")
    hide = torch.zeros_like(ids, dtype=torch.bool)
    hide[:, 3] = True
    got = stored(ids, mask, hide | (ids >= tok.first_ptm), tok)
    assert (got[:, 3] == 0).all() and (got[:, 16] != 0).any()
    torch.testing.assert_close(got[:, 16], live[:, 16], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, 4:16], live[:, 4:16], atol=1e-5, rtol=1e-5)
    # training on the stored states
    result = train_ptm(cfg)
    assert result.test is not None and np.isfinite(result.test["loss"])
    with pytest.raises(ConfigError, match="use_esm=true as well"):
        load_ptm_config(None, [f"dataset.dataset_location={data}", "training.use_precomputed_embeddings=true"])


@pytest.mark.shared_data
def test_a_trained_ptm_mamba_is_a_fine_tuning_backbone(tmp_path, capsys, whole_run):
    """A `ptm train` run directory as model.name: LoRA and a frozen backbone on real SUMOylation site windows,
    predictions from the run, and the backbone's residue states equal the PTM model's own embeddings."""
    from plmforge.api import predict
    from plmforge.cli import main
    from plmforge.config import ModelConfig, load_config
    from plmforge.models.backbone import load_backbone
    from plmforge.ptm.train import load_ptm_model, ptm_embeddings
    from plmforge.train.run import train

    ptm_run = _copy_of(whole_run[1].run_dir, tmp_path / "ptm")  # a trained run directory (a copy of the module's)
    backbone = load_backbone(ModelConfig(name=str(ptm_run)))
    assert backbone.family.name == "ptm_mamba" and backbone.hidden_size == D_MODEL
    model, tok = load_ptm_model(ptm_run)
    seq = "MKVLAAGIVGKSEQ"
    ids = torch.from_numpy(tok.encode(seq))[None]
    with torch.no_grad():
        states = backbone.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].numpy()
    np.testing.assert_allclose(states, ptm_embeddings(model, tok, [seq])[0], atol=1e-5)

    sumo = shared("sumo_21mer")
    for split, n in (("train", 60), ("test", 20)):
        rows = []
        for label, name in ((1, "pos"), (0, "neg")):
            text = (sumo / f"Sumoylation_{name}_{'Train' if split == 'train' else 'Hard_Test'}.fasta").read_text()
            rows += [{"aa_seq": "".join(r.splitlines()[1:]), "label": label} for r in text.split(">")[1:n + 1]]
        pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(tmp_path / f"sumo_{split}.csv", index=False)
    for method in ("lora", "freeze"):
        cfg = load_config(None, [f"data.train={tmp_path / 'sumo_train.csv'}", f"data.test={tmp_path / 'sumo_test.csv'}", f"model.name={ptm_run}",
                                 "data.problem_type=single_label_classification", "data.num_labels=2",
                                 f"method.name={method}", "head.pooling=mean", "training.epochs=2",
                                 f"output.dir={tmp_path / method}", "training.learning_rate=0.003"])
        result = train(cfg, progress=False)
        assert result.fit.epochs_run == 2 and np.isfinite(result.test_metrics["metrics"]["mcc"])
        assert (tmp_path / method / "tokenizer" / "ptm_tokenizer.json").is_file()
    pred = predict(tmp_path / "lora", [rows[0]["aa_seq"], rows[-1]["aa_seq"]])
    assert len(pred.table) == 2 and set(pred.table["prediction"]) <= {0, 1}
    assert main(["predict", str(tmp_path / "freeze"), "--sequence", rows[0]["aa_seq"]]) == 0
    assert "prob_1" in capsys.readouterr().out
    with pytest.raises(Exception, match="gradient_checkpointing"):
        load_backbone(ModelConfig(name=str(ptm_run), gradient_checkpointing=True))
