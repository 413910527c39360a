"""`plmforge predict RUN_A RUN_B --input F` averages compatible runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plmforge.api import predict, predict_ensemble
from plmforge.cli import main
from plmforge.errors import ConfigError


def _train(tmp_path, tiny_models, amp_small, name, *extra):
    out = tmp_path / name
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=1",
                 "output.bootstrap=0", "output.baselines=false", f"output.dir={out}", *extra]) == 0
    return out


def test_an_ensemble_is_the_mean_of_its_members(tmp_path, tiny_models, amp_small, capsys):
    cls = "data.problem_type=single_label_classification"
    a = _train(tmp_path, tiny_models, amp_small, "a", cls, "training.seed=1")
    b = _train(tmp_path, tiny_models, amp_small, "b", cls, "training.seed=2", "method.name=freeze")
    c = _train(tmp_path, tiny_models, amp_small, "c", cls, "training.seed=3", f"model.name={tiny_models['bert']}")
    test = amp_small / "test.csv"
    members = [predict(r, test).table for r in (a, b, c)]
    both = predict_ensemble([a, b, c], test).table
    mean = np.mean([m[["prob_0", "prob_1"]].to_numpy() for m in members], axis=0)
    np.testing.assert_allclose(both[["prob_0", "prob_1"]].to_numpy(), mean, atol=1e-7)
    assert (both["prediction"] == mean.argmax(1)).all()
    out = tmp_path / "ens.csv"
    assert main(["predict", str(a), str(b), str(c), "--input", str(test), "--output", str(out)]) == 0
    text = capsys.readouterr()
    assert "ensemble of 3 runs" in text.out + text.err and str(b) in text.out + text.err
    np.testing.assert_allclose(pd.read_csv(out)[["prob_0", "prob_1"]].to_numpy(), mean, atol=1e-6)
    reg = _train(tmp_path, tiny_models, amp_small, "reg", "data.problem_type=regression")
    with pytest.raises(ConfigError, match="predict different things"):
        predict_ensemble([a, reg], test)
    values = [predict(r, test).table["prediction"].to_numpy() for r in (reg, reg)]
    np.testing.assert_allclose(predict_ensemble([reg, reg], test).table["prediction"].to_numpy(), values[0])


def test_residue_scores_are_averaged_over_the_residues_every_member_predicted():
    from plmforge.api import mean_scores

    a = [np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])]
    b = [np.array([[0.6, 0.4], [0.0, 1.0]])]  # a shorter length limit: the third residue was cut
    got = mean_scores([a, b])
    np.testing.assert_allclose(got[0], [[0.4, 0.6], [0.2, 0.8]])
