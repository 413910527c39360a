"""Per-residue classes named by their symbols (data.residue_classes=H,E,L): the prediction tables carry a
`predicted_class` (and `label_class`) column next to the class numbers, the confusion matrix's axes and the
metric files name the classes, the web UI's table shows the symbol next to the number; without
residue_classes every output is as before (numbers only). The probability columns stay prob_0, prob_1, ...
for every task (the threshold, ensembles and readers of the tables use them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plmforge import plots, threshold
from plmforge.cli import main
from plmforge.tasks import PROBLEM_TYPES

SYMBOLS = ("H", "E", "L")
RES = "residue_single_label_classification"


def _state(residue: str) -> int:
    return 0 if residue in "AELMQKRH" else 1 if residue in "VIYFWT" else 2


def _dataset(root: Path, symbols: bool) -> Path:
    """train/validation/test CSVs of random sequences, labelled H/E/L (or 0/1/2) by a per-residue rule."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("validation", 12), ("test", 12)):
        rows = []
        for i in range(n):
            seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=int(rng.integers(10, 25))))
            states = [_state(r) for r in seq]
            rows.append({"id": f"{split}{i}", "sequence": seq,
                         "label": "".join(SYMBOLS[s] if symbols else str(s) for s in states)})
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    return root


def _train(tmp: Path, tiny_models: dict, symbols: bool) -> Path:
    data, rd = _dataset(tmp / "data", symbols), tmp / "run"
    args = ["train", f"data.dataset={data}", f"model.name={tiny_models['esm']}", f"data.problem_type={RES}",
            "data.sequence_column=sequence", "data.label_column=label", "data.id_column=id", "training.epochs=1",
            "output.bootstrap=0", "output.baselines=false", f"output.dir={rd}"]
    assert main(args + (["data.residue_classes=H,E,L"] if symbols else [])) == 0
    return rd


@pytest.fixture(scope="module")
def named_run(tmp_path_factory, tiny_models) -> Path:
    return _train(tmp_path_factory.mktemp("named"), tiny_models, symbols=True)


@pytest.fixture(scope="module")
def numbered_run(tmp_path_factory, tiny_models) -> Path:
    return _train(tmp_path_factory.mktemp("numbered"), tiny_models, symbols=False)


def _check_named(long: pd.DataFrame, with_labels: bool) -> None:
    cols = list(long.columns)
    assert cols.index("predicted_class") == cols.index("prediction") + 1  # next to the number
    assert [f"prob_{j}" for j in range(3)] == [c for c in cols if c.startswith("prob_")]  # not renamed
    assert (long["predicted_class"] == [SYMBOLS[p] for p in long["prediction"]]).all()
    assert (long["prediction"] == long[["prob_0", "prob_1", "prob_2"]].to_numpy().argmax(1)).all()
    if with_labels:
        assert cols.index("label_class") == cols.index("label") + 1
        assert (long["label_class"] == [SYMBOLS[int(v)] for v in long["label"]]).all()
        assert (long["label_class"] == [SYMBOLS[_state(r)] for r in long["residue"]]).all()
    else:
        assert "label_class" not in cols


def test_run_outputs_name_the_classes(named_run):
    long = pd.read_csv(named_run / "test_predictions.csv", keep_default_na=False)
    _check_named(long, with_labels=True)
    strings = pd.read_csv(named_run / "test_predictions_sequences.csv")
    for ident, text in zip(strings["id"], strings["predicted"], strict=True):
        assert text == "".join(long.loc[long["id"] == ident, "predicted_class"])
    blob = json.loads((named_run / "test_metrics.json").read_text())
    assert blob["confusion_matrix_classes"] == list(SYMBOLS) and len(blob["confusion_matrix"]) == 3
    assert (named_run / "plots" / "confusion_matrix.png").is_file()


def test_predict_and_evaluate_name_the_classes(named_run, tmp_path, monkeypatch):
    from plmforge.api import evaluate, predict, predict_ensemble

    test = named_run.parent / "data" / "test.csv"
    out = tmp_path / "pred.csv"
    assert main(["predict", str(named_run), "--input", str(test), "--output", str(out)]) == 0
    _check_named(pd.read_csv(out, keep_default_na=False), with_labels=False)
    _check_named(predict(named_run, test).table, with_labels=False)
    _check_named(predict_ensemble([named_run, named_run], test).table, with_labels=False)
    drawn = {}
    monkeypatch.setattr(plots, "confusion", lambda cm, out, title="", classes=None: drawn.update(classes=classes))
    report = evaluate(named_run, test)
    report.write(tmp_path / "eval")
    assert drawn["classes"] == list(SYMBOLS)
    assert report.blob["confusion_matrix_classes"] == list(SYMBOLS)
    _check_named(pd.read_csv(tmp_path / "eval" / "predictions.csv", keep_default_na=False), with_labels=True)


def test_without_residue_classes_outputs_stay_numbers(numbered_run, named_run):
    long = pd.read_csv(numbered_run / "test_predictions.csv")
    assert list(long.columns) == ["id", "position", "residue", "label", "prediction", "prob_0", "prob_1", "prob_2"]
    named = pd.read_csv(named_run / "test_predictions.csv")
    assert list(named.drop(columns=["label_class", "predicted_class"]).columns) == list(long.columns)
    assert "confusion_matrix_classes" not in json.loads((numbered_run / "test_metrics.json").read_text())
    strings = pd.read_csv(numbered_run / "test_predictions_sequences.csv", dtype={"predicted": str})
    assert all(set(p) <= set("012") for p in strings["predicted"])


def _ticks(fig) -> tuple[list[str], list[str]]:
    fig.canvas.draw()
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_confusion_matrix_axes_carry_the_symbols():
    import matplotlib.pyplot as plt

    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    fig = plots.confusion_figure(cm, classes=list(SYMBOLS))
    assert _ticks(fig) == (list(SYMBOLS), list(SYMBOLS))
    assert fig.axes[0].get_xlabel() == "predicted class" and fig.axes[0].get_ylabel() == "true class"
    plt.close(fig)
    fig = plots.confusion_figure(cm)  # unset: the class numbers
    assert _ticks(fig) == (["0", "1", "2"], ["0", "1", "2"])
    plt.close(fig)
    fig = plots.confusion_figure(np.eye(4, dtype=int), classes=["N", "P"])  # fewer symbols than classes
    assert _ticks(fig)[0] == ["N", "P", "2", "3"]
    plt.close(fig)


def test_problem_plots_pass_symbols_only_for_residue_classes(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "confusion", lambda cm, out, title="", classes=None: drawn.append(classes))
    labels = [np.array([0, 1, 2, 0]), np.array([2, 2])]
    scores = [np.eye(3)[[0, 1, 1, 0]], np.eye(3)[[2, 0]]]
    residue = PROBLEM_TYPES[RES]
    residue.plots(labels, scores, tmp_path, SYMBOLS)
    residue.plots(labels, scores, tmp_path)
    # sequence tasks take class numbers as labels: residue_classes does not name them
    PROBLEM_TYPES["single_label_classification"].plots(np.array([0, 1, 2]), np.eye(3), tmp_path, SYMBOLS)
    assert drawn == [list(SYMBOLS), None, None]
    assert residue.metric_extras(labels, scores, SYMBOLS)["confusion_matrix_classes"] == list(SYMBOLS)
    assert "confusion_matrix_classes" not in residue.metric_extras(labels, scores)


def test_tuned_threshold_keeps_the_symbols_in_step():
    problem = PROBLEM_TYPES[RES]
    scores = [np.array([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]), np.array([[0.55, 0.45]])]
    labels = [np.array([0, 1, -100]), np.array([1])]
    frames = problem.frames(["a", "b"], ["MKT", "G"], scores, labels, ("N", "P"))
    assert frames[""]["label_class"].tolist() == ["N", "P", None, "P"]  # a masked residue has no label
    decided = threshold.apply_to_frames(frames, 0.25, problem, ("N", "P"))[""]
    assert decided["prediction"].tolist() == [1, 1, 0, 1]
    assert decided["predicted_class"].tolist() == ["P", "P", "N", "P"]
    assert decided["prediction_at_0.5"].tolist() == [0, 1, 0, 0]
    plain = threshold.apply_to_frames(problem.frames(["a", "b"], ["MKT", "G"], scores, labels), 0.25, problem, None)
    assert "predicted_class" not in plain[""].columns and "label_class" not in plain[""].columns


def test_ui_table_shows_the_symbol_next_to_the_number():
    from plmforge.ui import views

    frame = pd.DataFrame({"id": ["p"] * 2, "position": [1, 2], "residue": ["M", "K"], "prediction": [0, 2],
                          "prob_0": [0.8, 0.1], "prob_1": [0.1, 0.1], "prob_2": [0.1, 0.8],
                          "predicted_class": ["H", "L"]})
    view = views.prediction_view(frame)
    assert list(view.columns)[:6] == ["id", "position", "residue", "prediction", "predicted_class", "prob_0"]
    legend = views.residue_html(frame, SYMBOLS)
    assert "H (0)" in legend and "L (2)" in legend
