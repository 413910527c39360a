"""`plmforge push`: the folder that goes to the Hub (tested offline), its model card, the upload calls,
and predicting from a pushed run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from plmforge.api import load_run, predict
from plmforge.cli import main
from plmforge.errors import ConfigError, PlmforgeError, RunDirError
from plmforge.share import push


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models, amp_small):
    out = tmp_path_factory.mktemp("push") / "run"
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", "training.epochs=2",
                 "data.problem_type=single_label_classification", "output.bootstrap=200",
                 "training.tune_threshold=mcc", f"output.dir={out}"]) == 0
    return out


def test_dry_run_writes_what_prediction_needs_and_a_card_with_the_evidence(run, tmp_path, amp_small, capsys):
    folder = tmp_path / "upload"
    assert main(["push", str(run), "--repo", "lab/amp-esm", "--dry-run", "--out", str(folder)]) == 0
    assert "nothing uploaded" in capsys.readouterr().out
    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    for needed in ("config.yaml", "task.json", "best/model.safetensors", "best/checksums.json", "threshold.json",
                   "test_metrics.json", "test_baselines.csv", "command.txt", "README.md", "plots/baselines.png"):
        assert needed in names, needed
    assert not any(n.startswith("last/") or n == "split_mapping.json" or n.endswith("training_state.pt")
                   for n in names)  # training state and sample ids stay home
    card = (folder / "README.md").read_text()
    test = json.loads((run / "test_metrics.json").read_text())
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "plmforge" and "single_label_classification" in front["tags"]
    reported = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert reported["mcc"] == pytest.approx(test["metrics"]["mcc"])
    mcc_ci = test["intervals"]["mcc"]
    assert f"| mcc | {test['metrics']['mcc']:.4f} | [{mcc_ci['low']:.4f}, {mcc_ci['high']:.4f}] |" in card
    assert "composition" in card and test["verdict"]["text"] in card
    assert (run / "command.txt").read_text().strip() in card
    assert f"{json.loads((run / 'threshold.json').read_text())['threshold']:.4g}" in card
    assert "local directory" in card  # the tiny backbone is not on the Hub: the card says so
    # the folder is a run: it predicts exactly as the run does (threshold included)
    mine = predict(run, amp_small / "test.csv").table
    theirs = predict(load_run(folder), amp_small / "test.csv").table
    np.testing.assert_allclose(theirs[["prob_0", "prob_1"]].to_numpy(), mine[["prob_0", "prob_1"]].to_numpy())
    assert (theirs["prediction"] == mine["prediction"]).all()


def test_push_creates_the_repository_and_uploads_the_folder(run, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None):  # type: ignore[no-untyped-def]
            calls["token"] = token

        def create_repo(self, repo_id, **kw):  # type: ignore[no-untyped-def]
            calls["create"] = (repo_id, kw)

        def upload_folder(self, *, repo_id, folder_path, **kw):  # type: ignore[no-untyped-def]
            from pathlib import Path

            calls["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*")
                                    if p.is_file())
            calls["upload"] = (repo_id, kw)
            return type("Commit", (), {"repo_url": f"https://huggingface.co/{repo_id}"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = push(run, "lab/amp-esm", private=True)
    assert calls["create"] == ("lab/amp-esm", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls["upload"][0] == "lab/amp-esm" and "README.md" in calls["files"]
    assert "best/model.safetensors" in calls["files"] and sorted(result.files) == calls["files"]
    assert result.url == "https://huggingface.co/lab/amp-esm"

    from huggingface_hub.errors import LocalTokenNotFoundError

    def no_token(self, repo_id, **kw):  # type: ignore[no-untyped-def]
        raise LocalTokenNotFoundError("no token")

    monkeypatch.setattr(FakeApi, "create_repo", no_token)
    with pytest.raises(PlmforgeError, match="no HuggingFace token.*hf auth login"):
        push(run, "lab/amp-esm")


def test_predict_downloads_a_pushed_run_by_its_repository_id(run, tmp_path, amp_small, monkeypatch):
    import huggingface_hub

    folder = tmp_path / "hub_copy"
    push(run, "lab/amp-esm", dry_run=True, out=folder)
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(folder))
    table = predict("lab/amp-esm", amp_small / "test.csv").table
    assert asked == ["lab/amp-esm"] and len(table) == 32

    def offline(repo, **kw):  # type: ignore[no-untyped-def]
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(RunDirError, match="not a local run directory, and downloading it .* failed"):
        load_run("lab/other")


def test_bad_pushes_are_refused_before_anything_is_written(run, tmp_path):
    with pytest.raises(ConfigError, match="owner/name"):
        push(run, "just-a-name", dry_run=True, out=tmp_path / "a")
    with pytest.raises(RunDirError, match="config.yaml is missing"):
        push(tmp_path, "lab/x", dry_run=True, out=tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="already holds files"):
        push(run, "lab/x", dry_run=True, out=tmp_path / "c")
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "a").exists()
