"""The web-UI tutorial (docs/tutorials/web-ui.md) step by step in a real browser, as a biologist follows it:
a project folder holding one labelled CSV with the lab's own column names, a FASTA of peptides to score and a
labelled file kept aside; `plmforge ui` started in that folder; upload, columns found, preview, the default
model and method, Start, progress, test metrics with intervals and baselines, the FASTA predicted with its
own ids, the kept-aside file evaluated, the run in the Runs tab. Nothing on the page shows a temporary path
(run directories are shown relative to the folder the UI was started in).

Scale: in the suite, 400 labelled peptides (a stratified sample of the bundled AMP example's train and
validation files) and 60 / 20 held-out ones; with PLMFORGE_SCREENSHOTS=docs the whole example (4,177
labelled, 465 held out), and the screenshots and the numbers the tutorial quotes are written to
docs/screenshots/tutorial_*.png and docs/screenshots/tutorial_run.json:

    PLMFORGE_SCREENSHOTS=docs .venv/bin/python -m pytest tests/test_ui_tutorial.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from browser_steps import docs_mode, free_port, pick, screenshot, status_text, upload, value_of, wait_status
from conftest import REPO

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "tutorial"
DOCS_SHOTS = REPO / "docs" / "screenshots"
RUN = "amp-first"
pytestmark = [pytest.mark.browser, pytest.mark.pretrained]


def _project(root: Path, amp_dir: Path, whole: bool) -> dict[str, Path]:
    """The lab's folder: amp_labelled.csv (name, peptide, antimicrobial), new_peptides.fasta and
    kept_aside.csv (the bundled test split, as FASTA without labels and as a labelled CSV)."""
    labelled = pd.concat([pd.read_csv(amp_dir / "train.csv"), pd.read_csv(amp_dir / "validation.csv")])
    held = pd.read_csv(amp_dir / "test.csv")
    if not whole:
        labelled = labelled.groupby("label").sample(n=200, random_state=0)
        held = held.groupby("label").sample(n=30, random_state=0)
    labelled.rename(columns={"id": "name", "aa_seq": "peptide", "label": "antimicrobial"}).to_csv(
        root / "amp_labelled.csv", index=False)
    held.rename(columns={"id": "name", "aa_seq": "peptide", "label": "antimicrobial"}).to_csv(
        root / "kept_aside.csv", index=False)
    fasta = held if whole else held.head(20)
    (root / "new_peptides.fasta").write_text("".join(f">{i} candidate\n{s}\n" for i, s in zip(fasta["id"],
                                                                                           fasta["aa_seq"])))
    return {"labelled": root / "amp_labelled.csv", "fasta": root / "new_peptides.fasta",
            "kept": root / "kept_aside.csv", "n_labelled": len(labelled), "n_fasta": len(fasta),
            "n_kept": len(held)}


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory, amp_dir):
    from plmforge.ui.app import launch, shutdown

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the browser tests need Debian's chromium: run `bash scripts/system.sh` (as root or with sudo)")
    root = tmp_path_factory.mktemp("lab") / "my-project"
    root.mkdir()
    files = _project(root, amp_dir, whole=docs_mode())
    before = {k: os.environ.get(k) for k in ("PLMFORGE_CACHE_DIR",)}
    os.environ["PLMFORGE_CACHE_DIR"] = str(root.parent / "store")  # a first run: everything is embedded
    cwd = Path.cwd()
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    from playwright.sync_api import sync_playwright

    demo = None
    try:
        os.chdir(root)  # as `cd my-project && plmforge ui`
        port = free_port()
        demo = launch(port=port, runs_dir=root / "runs", work_dir=root / ".plmforge-ui", block=False)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US",
                                       accept_downloads=True).new_page()
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Train").wait_for()
            yield {"page": page, "root": root, "files": files}
            browser.close()
    finally:
        os.chdir(cwd)  # first: whatever fails below, the worker's later tests run where they started
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if demo is not None:
            try:
                shutdown(demo)
            finally:
                demo.close()


def shot(page, name: str, region: tuple[str, str] | None = None) -> None:
    screenshot(page, ARTIFACTS / f"{name}.png", DOCS_SHOTS / f"{name}.png", region)


def no_temporary_path(page, *where: str) -> None:
    """What the docs' screenshots show names no temporary path (the command preview and the log, not shot,
    keep absolute paths: a command copied from there must run from any folder)."""
    text = "\n".join(page.locator(w).inner_text() for w in where)
    assert "/tmp" not in text and "pytest-" not in text, re.findall(r"\S*(?:/tmp|pytest-)\S*", text)[:5]


def test_the_tutorial_from_a_csv_to_predictions_and_an_evaluation(tutorial):
    from playwright.sync_api import expect

    from plmforge.api import evaluate

    page, files, root = tutorial["page"], tutorial["files"], tutorial["root"]
    numbers: dict = {"labelled": files["n_labelled"], "fasta": files["n_fasta"], "kept_aside": files["n_kept"]}

    # 1. Data: the lab's CSV; its columns are found by their content, the task is filled in, preview
    upload(page, [files["labelled"]])
    expect(page.locator("#columns_md")).to_contain_text("peptide", timeout=30_000)
    assert (value_of(page, "data.sequence_column"), value_of(page, "data.label_column"),
            value_of(page, "data.id_column")) == ("peptide", "antimicrobial", "name")
    assert value_of(page, "data.problem_type") == "single_label_classification"
    page.get_by_role("button", name="Preview dataset").click()
    expect(page.locator("#data_msg")).to_contain_text("dataset OK", timeout=120_000)
    summary = page.locator("#data_summary").inner_text()
    sizes = {s: int(n.replace(",", "")) for s, n in re.findall(r"\b(train|validation|test):? (\d[\d,]*)", summary)}
    assert set(sizes) == {"train", "validation", "test"} and sum(sizes.values()) == files["n_labelled"], summary
    numbers["splits"] = sizes
    no_temporary_path(page, "#data_summary", "#data_rows")
    shot(page, "tutorial_1_data", region=("#step_data", "#preview_panel"))

    # 2. Model and method: the defaults (the offline AntiBERTy, backbone frozen) are kept
    assert "antiberty" in page.locator("#model").get_by_role("combobox").input_value().lower()
    assert page.locator("#method").get_by_role("combobox").input_value() == "freeze"
    page.get_by_label("run name", exact=False).first.fill(RUN)
    shot(page, "tutorial_2_model", region=("#step_model", "#start"))

    # 3. Start: progress in words while the peptides are embedded and while the head trains
    t0 = time.time()
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#status")).to_contain_text(RUN, timeout=30_000)
    seen, shots = [], set()
    end = time.time() + (1800 if docs_mode() else 400)
    while time.time() < end:
        text = status_text(page)
        seen.append(text)
        embedded = re.search(r"Embedding:\W*([\d,]+) of ([\d,]+)", text)
        if embedded and "embedding" not in shots and \
                4 * int(embedded.group(1).replace(",", "")) >= int(embedded.group(2).replace(",", "")):
            shot(page, "tutorial_3_embedding", region=("#status", "#progress_bar"))  # a quarter done
            shots.add("embedding")
        if re.search(r"step (\d+) of", text) and "epoch 2 of" in text and "training" not in shots:
            shot(page, "tutorial_4_training", region=("#status", "#metric_plot"))
            shots.add("training")
        if "Status: finished" in text or "Status: failed" in text:
            break
        time.sleep(0.2)
    text = wait_status(page, ("finished",), seen=seen)
    if docs_mode():  # the docs show both phases: a stale picture must not sit beside fresh numbers
        assert shots == {"embedding", "training"}, shots
    numbers["start_to_finished_s"] = round(time.time() - t0)
    assert any(re.search(r"[\d,]+ of [\d,]+ sequences", t) for t in seen), seen[:10]
    assert f"Run directory: runs/{RUN}" in text.replace("**", "").replace("`", "")  # where the user started
    verdict = page.locator("#verdict").inner_text()
    assert "held-out test proteins" in verdict and "95% interval" in verdict and "baseline" in verdict
    table = page.locator("#test_metrics").inner_text()
    assert "95% CI low" in table and "baseline: composition" in table and "mcc" in table
    page.locator("#run_plots").scroll_into_view_if_needed()  # the plots load when in view
    page.wait_for_function("() => { const im = [...document.querySelectorAll('#run_plots img')];"
                           " return im.length >= 5 && im.every(i => i.complete && i.naturalWidth > 0); }")
    no_temporary_path(page, "#status", "#verdict", "#test_metrics")
    shot(page, "tutorial_5_results", region=("#status", "#run_view"))
    run_dir = root / "runs" / RUN
    blob = json.loads((run_dir / "test_metrics.json").read_text())
    assert blob["n_samples"] == sizes["test"]
    numbers["verdict"] = verdict.strip()
    numbers["test"] = {k: blob["metrics"][k] for k in ("accuracy", "mcc", "auroc")}
    numbers["test_intervals"] = {k: blob["intervals"][k] for k in ("mcc", "auroc")}
    numbers["composition"] = {k: blob["baselines"]["composition"]["metrics"][k] for k in ("mcc", "auroc")}
    epochs = [json.loads(line) for line in (run_dir / "metrics_epochs.jsonl").read_text().splitlines() if line]
    numbers["epochs_run"] = len(epochs)

    # 4. Predict: the FASTA's peptides, keyed by the FASTA's own ids
    page.get_by_role("tab", name="Predict").click()
    pick(page, "pred_run", RUN)
    page.locator("#pred_file input[type=file]").set_input_files(str(files["fasta"]))
    page.get_by_role("button", name="Predict file").click()
    expect(page.locator("#pred_msg")).to_contain_text(f"predicted {files['n_fasta']} sequences", timeout=300_000)
    with page.expect_download() as download:
        page.locator("#pred_download").click()
    predicted = pd.read_csv(download.value.path())
    fasta_ids = [line[1:].split()[0] for line in files["fasta"].read_text().splitlines() if line.startswith(">")]
    assert list(predicted["id"]) == fasta_ids
    numbers["predicted_positive"] = int((predicted["prediction"].astype(str) == "1").sum())
    no_temporary_path(page, "#pred_msg", "#pred_table")
    shot(page, "tutorial_6_predict", region=("#pred_run", "#pred_table"))

    # 5. Evaluate: the labelled file kept aside, with the same metrics as the Python API gives
    page.get_by_role("tab", name="Evaluate").click()
    pick(page, "eval_run", RUN)
    page.locator("#eval_file input[type=file]").set_input_files(str(files["kept"]))
    expect(page.locator("#eval_columns_md")).to_contain_text("peptide", timeout=30_000)
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#eval_msg")).to_contain_text("evaluated", timeout=300_000)
    expected = evaluate(run_dir, files["kept"], columns={"sequence": "peptide", "label": "antimicrobial",
                                                         "id": "name"})
    with page.expect_download() as download:
        page.locator("#eval_download").click()
    got = pd.read_csv(download.value.path()).set_index("metric")
    assert got.loc["mcc", "value"] == pytest.approx(expected.metrics["mcc"])
    expect(page.locator("#eval_gallery")).to_contain_text("confusion matrix")
    page.locator("#eval_gallery").scroll_into_view_if_needed()
    no_temporary_path(page, "#eval_msg", "#eval_metrics")
    shot(page, "tutorial_7_evaluate", region=("#eval_run", "#eval_gallery"))
    numbers["kept_aside_eval"] = {"mcc": float(got.loc["mcc", "value"]), "mcc_low": float(got.loc["mcc", "ci95_low"]),
                                  "mcc_high": float(got.loc["mcc", "ci95_high"]),
                                  "auroc": float(got.loc["auroc", "value"])}

    # 6. Runs: the run listed with its status and metrics
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#runs_table")).to_contain_text(RUN)
    expect(page.locator("#runs_table")).to_contain_text("finished")
    pick(page, "run_pick", RUN)
    expect(page.locator("#run_metrics")).to_contain_text("95% CI low")
    no_temporary_path(page, "#runs_table", "#run_metrics")
    shot(page, "tutorial_8_runs", region=("#runs_table", "#run_metrics"))
    if docs_mode():
        import torch

        from plmforge.precision import cpu_name

        numbers["machine"] = f"{cpu_name()}, {os.cpu_count()} cores, torch capability " \
                             f"{torch.backends.cpu.get_cpu_capability()}"
        (DOCS_SHOTS / "tutorial_run.json").write_text(json.dumps(numbers, indent=1) + "\n")
