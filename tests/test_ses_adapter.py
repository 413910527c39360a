"""The `ses_adapter` method: structure tokens of the real structures in ../shared/data/structures
(written by `plmforge structure`) fused into a frozen tiny backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import StopTraining, stop_after_epoch
from safetensors.torch import load_file

from plmforge.api import load_run
from plmforge.cli import main
from plmforge.config import load_config
from plmforge.errors import ConfigError, DataError
from plmforge.methods.ses_adapter import StructureAdapter
from plmforge.train.run import train
from plmforge.train.setup import assemble

pytestmark = pytest.mark.shared_data
SS3 = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def structure_dataset(structures, out: Path, longest: int, test_files: int, validation_files: int) -> Path:
    """Every protein chain of the 48 files (10 to `longest` residues; `structures`: conftest's fixture, the
    3Di and DSSP strings of all 48), split by file (seeded); labels: the 3-state secondary structure per
    residue (`ss3`), and per chain whether over a third is helix (`helical`)."""
    table = structures.table()
    table = table[table["aa_seq"].str.len().between(10, longest)].copy()
    table["ss3"] = ["".join(SS3.get(c, "L") for c in s) for s in table["ss8_seq"]]
    table["helical"] = [int(s.count("H") > len(s) / 3) for s in table["ss3"]]
    table["stem"] = [Path(f).name.split(".")[0] for f in table["file"]]
    stems = sorted(table["stem"].unique())
    np.random.default_rng(0).shuffle(stems)
    which = {s: "test" if i < test_files else "validation" if i < test_files + validation_files else "train"
             for i, s in enumerate(stems)}
    out.mkdir(parents=True, exist_ok=True)
    for split, part in table.groupby(table["stem"].map(which)):
        part[["id", "aa_seq", "foldseek_seq", "ss8_seq", "ss3", "helical"]].to_csv(out / f"{split}.csv", index=False)
    return out


@pytest.fixture(scope="module")
def ss_data(tmp_path_factory, structures) -> Path:
    return structure_dataset(structures, tmp_path_factory.mktemp("ss_data"), 120, 6, 6)


def _cfg(tmp_path, tiny_models, data, out="run", *extra):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}", "method.name=ses_adapter",
                              "data.problem_type=residue_single_label_classification", "data.label_column=ss3",
                              "data.residue_classes=H,E,L", "training.epochs=2", f"output.dir={tmp_path / out}",
                              f"method.cache_dir={tmp_path / 'store'}", "method.attention_heads=4", *extra])


def test_only_the_adapter_and_the_head_train(tmp_path, tiny_models, ss_data):
    asm = assemble(_cfg(tmp_path, tiny_models, ss_data))
    trainable = [n for n, p in asm.model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("adapter.", "head.")) for n in trainable)
    assert any(n.startswith("adapter.embed.structure_foldseek_seq") for n in trainable)
    assert any(n.startswith("adapter.embed.structure_ss8_seq") for n in trainable)
    assert not any(p.requires_grad for p in asm.model.backbone.parameters())
    # the structure tokens reach the adapter, never the backbone
    batch = asm.collator()([asm.encoded["train"][0], asm.encoded["train"][1]])
    assert set(batch["inputs"]) == {"input_ids", "structure_foldseek_seq", "structure_ss8_seq"}
    assert asm.model.adapter_inputs == ("structure_foldseek_seq", "structure_ss8_seq")


def test_cross_attention_ignores_padding():
    torch.manual_seed(0)
    adapter = StructureAdapter(32, {"a": 20, "b": 8}, heads=4, dropout=0.0).eval()
    short, long = 7, 12
    hidden = torch.randn(2, long, 32)
    tokens = {"a": torch.randint(1, 21, (2, long)), "b": torch.randint(1, 9, (2, long))}
    mask = torch.ones(2, long, dtype=torch.bool)
    mask[:, 0] = False  # a special token
    mask[0, short - 1:] = False  # its end token and padding
    for t in tokens.values():
        t[~mask] = 0
    batched = adapter(hidden, tokens, mask)[0, :short]
    alone = adapter(hidden[:1, :short], {k: v[:1, :short] for k, v in tokens.items()}, mask[:1, :short])[0]
    torch.testing.assert_close(batched, alone)
    garbage = hidden.clone()
    garbage[0, short:] = 1e3  # whatever sits in padding
    torch.testing.assert_close(adapter(garbage, tokens, mask)[0, :short], alone)
    # and the structure does matter at real positions
    other = {k: v.clone() for k, v in tokens.items()}
    other["a"][0, 1:short - 1] = (other["a"][0, 1:short - 1] % 20) + 1
    assert not torch.allclose(adapter(hidden, other, mask)[0, :short], alone)


def test_resume_equals_an_uninterrupted_run(tmp_path, tiny_models, ss_data):
    extra = ["training.epochs=3", "batching.mode=tokens", "batching.max_tokens=400", "head.dropout=0.2",
             "training.patience=10"]
    whole = train(_cfg(tmp_path, tiny_models, ss_data, "whole", *extra))

    with pytest.raises(StopTraining):
        train(_cfg(tmp_path, tiny_models, ss_data, "cut", *extra), callbacks=[stop_after_epoch(1)])
    resumed = train(run_dir=tmp_path / "cut", resume=True)
    a, b = load_file(str(whole.run_dir / "last" / "model.safetensors")), \
        load_file(str(resumed.run_dir / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("adapter.") for k in a)
    assert not any(k.startswith("backbone.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert whole.test_metrics["metrics"] == pytest.approx(resumed.test_metrics["metrics"], abs=1e-6)


def test_sequence_level_with_a_mean_head_reads_token_states_from_the_store(tmp_path, tiny_models, ss_data):
    extra = ["data.problem_type=single_label_classification", "data.label_column=helical", "data.num_labels=2",
             "data.residue_classes=null", "head.pooling=mean", "method.structure_columns=foldseek_seq"]
    first = train(_cfg(tmp_path, tiny_models, ss_data, "first", *extra))
    log = (first.run_dir / "train.log").read_text()
    assert "embedding store" in log and "read from the store)" in log
    second = train(_cfg(tmp_path, tiny_models, ss_data, "second", *extra, "training.learning_rate=0.001"))
    assert "computed 0 of" in (second.run_dir / "train.log").read_text()
    from plmforge.store import store_infos

    assert {i.fingerprint["stored"] for i in store_infos(tmp_path / "store")} == {"tokens"}
    # the run predicts from files that carry the structure column, and says which command makes it
    out = tmp_path / "pred.csv"
    assert main(["predict", str(first.run_dir), "--input", str(ss_data / "test.csv"), "--output", str(out)]) == 0
    assert len(pd.read_csv(out)) == len(pd.read_csv(ss_data / "test.csv"))
    bare = tmp_path / "bare.csv"
    pd.read_csv(ss_data / "test.csv")[["id", "aa_seq"]].to_csv(bare, index=False)
    with pytest.raises(DataError, match="plmforge structure --dataset"):
        load_run(first.run_dir).records(__import__("plmforge.data.readers", fromlist=["read_file"]).read_file(bare),
                                        with_labels=False)


def _broken(tmp_path: Path, ss_data: Path, edit) -> Path:
    d = tmp_path / "broken"
    d.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        df = pd.read_csv(ss_data / f"{split}.csv")
        if split == "train":
            df = edit(df)
        df.to_csv(d / f"{split}.csv", index=False)
    return d


def test_structure_column_errors_name_the_row_and_the_fix(tmp_path, tiny_models, ss_data):
    data = _broken(tmp_path, ss_data, lambda df: df.drop(columns=["ss8_seq"]))
    with pytest.raises(DataError, match=r"needs a per-residue column 'ss8_seq'.*\n.*plmforge structure --dataset"):
        assemble(_cfg(tmp_path, tiny_models, data))

    def shorter(df):
        df.loc[2, "foldseek_seq"] = df.loc[2, "foldseek_seq"][:-1]
        return df

    data = _broken(tmp_path / "b", ss_data, shorter)
    with pytest.raises(DataError, match=r"train.csv, row 3 \(line 4\).*column 'foldseek_seq'.*symbols for a sequence"):
        assemble(_cfg(tmp_path, tiny_models, data))

    def empty(df):
        df.loc[0, "ss8_seq"] = np.nan
        return df

    data = _broken(tmp_path / "c", ss_data, empty)
    with pytest.raises(DataError, match=r"row 1 .*empty"):
        assemble(_cfg(tmp_path, tiny_models, data))

    def unknown(df):
        df.loc[1, "ss8_seq"] = "Z" + df.loc[1, "ss8_seq"][1:]
        return df

    data = _broken(tmp_path / "d", ss_data, unknown)
    with pytest.raises(DataError, match=r"(?s)row 2 .*unknown symbol 'Z' at position 1.*uses the symbols HBEGITSL"):
        assemble(_cfg(tmp_path, tiny_models, data))


def test_options_are_checked(tmp_path, tiny_models, ss_data):
    with pytest.raises(ConfigError, match="unknown structure column 'dssp'"):
        _cfg(tmp_path, tiny_models, ss_data, "run", "method.structure_columns=dssp")
    with pytest.raises(ConfigError, match="attention_heads=5 does not divide the backbone's hidden size 64"):
        assemble(_cfg(tmp_path, tiny_models, ss_data, "run", "method.attention_heads=5"))
    cfg = _cfg(tmp_path, tiny_models, ss_data, "run", "method.structure_columns=ss3_seq")
    assert cfg.method.options.structure_columns == ("ss3_seq",)


@pytest.mark.e2e
@pytest.mark.pretrained
def test_3di_tokens_help_antiberty_predict_secondary_structure(tmp_path, structures):
    """Per-residue 3-state secondary structure (from DSSP) of the real chains (up to 510 residues; 66 chains
    of 33 files to train, 6 files to validate, 8 to test), predicted from sequence with a frozen AntiBERTy:
    the residue head alone (freeze) vs the SES-Adapter fed the chains' 3Di tokens."""
    data = structure_dataset(structures, tmp_path / "data", 510, 8, 6)
    common = [f"data.dataset={data}", "model.name=antiberty", "data.problem_type=residue_single_label_classification",
              "data.label_column=ss3", "data.residue_classes=H,E,L", "training.epochs=9",
              "training.learning_rate=0.001", "training.patience=null", f"method.cache_dir={tmp_path / 'store'}"]
    plain = train(load_config(None, [*common, "method.name=freeze", f"output.dir={tmp_path / 'freeze'}"]))
    ses = train(load_config(None, [*common, "method.name=ses_adapter", "method.structure_columns=foldseek_seq",
                                   f"output.dir={tmp_path / 'ses'}"]))
    a, b = plain.test_metrics["metrics"], ses.test_metrics["metrics"]
    print(json.dumps({"freeze": a, "ses_adapter_3di": b}, indent=1))
    assert b["mcc"] > a["mcc"] + 0.15
    assert b["accuracy"] > 0.6
