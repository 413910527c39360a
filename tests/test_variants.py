"""Training data given as mutants of one wild type (data.mutant_column with data.wild_type): each row's
sequence is the wild type with its substitutions, the wild-type letters are checked with the row named, and a
fitness model trains end to end from such a file (a small deep mutational scan of real measurements)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from plmforge.config import DataConfig, TrainingConfig, load_config
from plmforge.data.dataset import load_data
from plmforge.data.notation import apply, parse_variant
from plmforge.errors import ConfigError, DataError

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def _dms(path, n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Single and double mutants of WT with a fitness that depends on the substitutions (hydrophobic
    residues at the first ten positions help), plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        k = int(rng.integers(1, 3))
        sites = sorted(rng.choice(len(WT), size=k, replace=False) + 1)
        subs = [f"{WT[p - 1]}{p}{rng.choice([a for a in 'AILMFVWGKDE' if a != WT[p - 1]])}" for p in sites]
        name = ":".join(subs)
        gain = sum((s[-1] in "AILMFVW") * (int(s[1:-1]) <= 10) for s in subs)
        rows.append({"mutant": name, "fitness": float(gain + 0.3 * rng.normal())})
    frame = pd.DataFrame(rows).drop_duplicates("mutant")
    frame.to_csv(path, index=False)
    return frame


def test_mutants_become_the_wild_type_with_their_substitutions(tmp_path):
    frame = _dms(tmp_path / "dms.csv", 40)
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wild type\n" + WT[:20] + "\n" + WT[20:] + "\n")
    for wild_type in (WT, str(fasta)):
        cfg = DataConfig(train=str(tmp_path / "dms.csv"), mutant_column="mutant", wild_type=wild_type,
                         label_column="fitness", problem_type="regression", test_fraction=0.0)
        data = load_data(cfg, TrainingConfig(seed=0))
        got = dict(zip([*data.splits["train"].ids, *data.splits["validation"].ids],
                       [*data.splits["train"].sequences, *data.splits["validation"].sequences], strict=True))
        assert len(got) == len(frame)
        for i, mutant in enumerate(frame["mutant"]):
            assert got[f"{tmp_path / 'dms.csv'}#{i + 1}"] == apply(parse_variant(mutant), WT)


def test_a_wrong_wild_type_letter_names_the_row_and_the_mutant(tmp_path):
    frame = _dms(tmp_path / "dms.csv", 30)
    frame.loc[6, "mutant"] = "W3A"
    frame.to_csv(tmp_path / "dms.csv", index=False)
    cfg = DataConfig(train=str(tmp_path / "dms.csv"), mutant_column="mutant", wild_type=WT, label_column="fitness",
                     problem_type="regression")
    with pytest.raises(DataError, match=r"row 7.*W3A: the wild type has 'T' at position 3") as err:
        load_data(cfg, TrainingConfig())
    assert "dms.csv" in str(err.value)


def test_the_options_come_together_and_explain_themselves(tmp_path):
    with pytest.raises(ConfigError, match="data.mutant_column needs data.wild_type"):
        DataConfig(train="x.csv", mutant_column="mutant")
    with pytest.raises(ConfigError, match="data.wild_type needs data.mutant_column"):
        DataConfig(train="x.csv", wild_type=WT)
    with pytest.raises(ConfigError, match="drop data.sequence_column=seq"):
        DataConfig(train="x.csv", mutant_column="mutant", wild_type=WT, sequence_column="seq")
    _dms(tmp_path / "dms.csv", 20)
    cfg = DataConfig(train=str(tmp_path / "dms.csv"), mutant_column="mutant", wild_type="MKT1AY",
                     label_column="fitness", problem_type="regression")
    with pytest.raises(DataError, match="not a protein sequence"):
        load_data(cfg, TrainingConfig())


def test_a_fitness_model_trains_from_mutant_notation_end_to_end(tmp_path, tiny_models):
    from plmforge.train.run import train

    _dms(tmp_path / "dms.csv", 160)
    (tmp_path / "wt.fasta").write_text(">wt\n" + WT + "\n")
    (tmp_path / "run.yaml").write_text(
        "data:\n  train: dms.csv\n  mutant_column: mutant\n  wild_type: wt.fasta\n  label_column: fitness\n"
        "  problem_type: regression\ntraining:\n  epochs: 3\n  learning_rate: 0.003\noutput:\n  bootstrap: 50\n")
    cfg = load_config(tmp_path / "run.yaml", [f"model.name={tiny_models['esm']}", f"output.dir={tmp_path / 'run'}",
                                              f"method.cache_dir={tmp_path / 'store'}"])
    assert cfg.data.wild_type == str((tmp_path / "wt.fasta").resolve())  # relative to the config file
    result = train(cfg, progress=False)
    assert result.test_metrics is not None and "spearman_corr" in result.test_metrics["metrics"]
    predictions = pd.read_csv(result.run_dir / "test_predictions.csv")
    assert set(predictions["sequence"]) <= {apply(parse_variant(m), WT) for m in pd.read_csv(tmp_path / "dms.csv")
                                            ["mutant"]}
    saved = json.loads(json.dumps(load_config(result.run_dir / "config.yaml").data.__dict__, default=str))
    assert saved["mutant_column"] == "mutant" and saved["wild_type"].endswith("wt.fasta")


def test_few_shot_sizes_and_repeats_give_a_learning_curve(tmp_path, tiny_models, capsys):
    """--few-shot 16,32 --repeats 2: four runs, each on its own subset (validation carved from it), one test
    split for all; per size the mean and sd of the runs' test metrics, a CSV and a plot; sizes above
    the data are refused before anything is written; --resume keeps finished runs."""
    from plmforge.cli import main

    _dms(tmp_path / "dms.csv", 120)
    out = tmp_path / "curve"
    args = ["train", f"data.train={tmp_path / 'dms.csv'}", "data.mutant_column=mutant", f"data.wild_type={WT}",
            "data.label_column=fitness", "data.problem_type=regression", f"model.name={tiny_models['esm']}",
            "training.epochs=4", "training.learning_rate=0.01", f"method.cache_dir={tmp_path / 'store'}",
            f"output.dir={out}"]
    assert main([*args, "--few-shot", "16,32", "--repeats", "2"]) == 0
    printed = capsys.readouterr()
    assert "n = 16" in printed.out + printed.err
    blob = json.loads((out / "few_shot.json").read_text())
    assert [(r["size"], r["repeat"]) for r in blob["runs"]] == [(16, 1), (16, 2), (32, 1), (32, 2)]
    tests, trains = set(), []
    for r in blob["runs"]:
        mapping = json.loads((out / f"n{r['size']}_r{r['repeat']}" / "split_mapping.json").read_text())
        assert mapping["counts"]["train"] + mapping["counts"]["validation"] == r["size"]
        tests.add(tuple(mapping["samples"]["test"]))
        trains.append(set(mapping["samples"]["train"]))
    assert len(tests) == 1 and trains[0] != trains[1]  # one yardstick; the repeats draw other subsets
    metric = blob["metric"]
    values = [r["test"][metric] for r in blob["runs"] if r["size"] == 32]
    assert blob["by_size"]["32"][metric]["mean"] == pytest.approx(np.mean(values))
    assert blob["by_size"]["32"][metric]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert len({round(r["test"]["mse"], 6) for r in blob["runs"]}) == 4  # four different models
    assert len(pd.read_csv(out / "few_shot.csv")) == 4 and (out / "plots" / "few_shot.png").stat().st_size > 5000
    kept = (out / "n16_r1" / "test_metrics.json").stat().st_mtime_ns
    assert main(["train", "--resume", str(out)]) == 0
    assert (out / "n16_r1" / "test_metrics.json").stat().st_mtime_ns == kept
    assert main([*args[:-1], f"output.dir={tmp_path / 'big'}", "--few-shot", "500"]) != 0
    assert "above the" in capsys.readouterr().err and not (tmp_path / "big").exists()


def test_a_fitness_run_reports_the_zero_shot_and_augmented_baselines(tmp_path, tiny_models):
    """With mutants of a wild type and a model that has its masked-LM head, the run's baselines include the
    model's zero-shot score (masked marginals summed over each variant's substitutions, as plmforge mutate
    score gives them) and the augmented model (one-hot positions + that score); a model without an LM head
    leaves them out and says so."""
    import shutil

    import torch
    from scipy import stats
    from transformers import AutoConfig, EsmForMaskedLM

    from plmforge.mutate import score
    from plmforge.train.run import train

    mlm = tmp_path / "mlm"
    shutil.copytree(tiny_models["esm"], mlm)
    for f in mlm.glob("model*.safetensors"):
        f.unlink()
    torch.manual_seed(3)
    EsmForMaskedLM(AutoConfig.from_pretrained(mlm)).save_pretrained(mlm)
    _dms(tmp_path / "dms.csv", 120)
    base = [f"data.train={tmp_path / 'dms.csv'}", "data.mutant_column=mutant", f"data.wild_type={WT}",
            "data.label_column=fitness", "data.problem_type=regression", "training.epochs=2",
            "output.bootstrap=50", f"method.cache_dir={tmp_path / 'store'}"]
    result = train(load_config(None, [*base, f"model.name={mlm}", f"output.dir={tmp_path / 'run'}"]), progress=False)
    baselines = result.test_metrics["baselines"]
    assert {"zero_shot", "augmented", "one_hot_position", "composition"} <= set(baselines)
    assert "intervals" in baselines["augmented"]
    test = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    mutants = ["".join(f"{w}{i + 1}{m}:" for i, (w, m) in enumerate(zip(WT, s, strict=True)) if w != m)[:-1]
               for s in test["sequence"]]
    zero = score(str(mlm), ",".join(mutants), WT, progress=False).table["score"].to_numpy()
    rho = stats.spearmanr(zero, test["label"]).statistic
    assert abs(baselines["zero_shot"]["metrics"]["spearman_corr"]) == pytest.approx(abs(rho), abs=1e-6)
    plain = train(load_config(None, [*base, f"model.name={tiny_models['esm']}", f"output.dir={tmp_path / 'bare'}"]),
                  progress=False)
    assert "zero_shot" not in plain.test_metrics["baselines"]
    assert "zero-shot baselines left out" in (tmp_path / "bare" / "train.log").read_text()
