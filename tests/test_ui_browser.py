"""The web UI end to end in a real browser (Debian's Chromium driven by Playwright), on a free loopback
port, with tiny random backbones and small real datasets: upload and preview a dataset, preview the
command and check it against a CLI run of the same config, train and download the test metrics, predict
a batch file and one residue-task sequence, abort a run mid-epoch and resume it, see a broken file's
message, browse runs and evaluate. Screenshots of every tab at each stage go to tests/artifacts/ui/.

Run alone: .venv/bin/python -m pytest tests/test_ui_browser.py  (needs `bash scripts/system.sh` once)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory, tiny_models):
    from plmforge.config import load_config
    from plmforge.train.run import train
    from plmforge.ui.app import launch

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the browser tests need Debian's chromium: run `bash scripts/system.sh` (as root or with sudo)")
    root = tmp_path_factory.mktemp("ui")
    runs, work = root / "runs", root / "work"
    # a finished residue-task run (paratope, real antibody chains) for the single-sequence prediction
    para = root / "paratope"
    para.mkdir()
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        name = "validation" if split == "val" else split
        pd.read_parquet(shared("paratope", f"sabdab_{split}.parquet")).head(n).to_parquet(para / f"{name}.parquet")
    train(load_config(None, [f"data.dataset={para}", f"model.name={tiny_models['bert']}",
                             "data.problem_type=residue_single_label_classification", "data.num_labels=2",
                             "data.sequence_column=sequence", "data.label_column=paratope_labels",
                             "data.residue_classes=N,P", "data.id_column=pdb", "training.epochs=2",
                             f"output.dir={runs / 'paratope-residues'}"]), progress=False)
    port = _free_port()
    demo = launch(port=port, runs_dir=runs, work_dir=work, block=False)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US", accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("tab", name="Train").wait_for()
        yield {"page": page, "runs": runs, "work": work, "root": root, "demo": demo}
        browser.close()
    demo.plmforge_app.jobs.stop_all()
    demo.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(page, elem_id: str, option: str, name: str | None = None) -> None:
    box = page.locator(f"#{elem_id}").get_by_role("combobox", name=name)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def set_text(page, key: str, value: str) -> None:
    """A generated form field by its config key, e.g. training.epochs (HTML id f_training_epochs)."""
    field = page.locator(f"#f_{key.replace('.', '_')}").locator("input, textarea").first
    field.fill(value)
    field.press("Tab")


def status_text(page) -> str:
    return page.locator("#status").inner_text()


def wait_status(page, words: tuple[str, ...], timeout: float = 240.0) -> str:
    end = time.time() + timeout
    while time.time() < end:
        text = status_text(page)
        if any(f"Status: {w}" in text for w in words):
            return text
        time.sleep(0.5)
    console = page.locator("#console textarea").first
    log = console.input_value() if console.count() else ""
    raise AssertionError(f"status never became {words}: {status_text(page)}\noptions: "
                         f"{page.locator('#options_msg').inner_text()}\nconsole:\n{log}")


def test_upload_preview_command_train_and_download(ui, tiny_models, amp_small, tmp_path):
    from playwright.sync_api import expect

    page = ui["page"]
    shot(page, "01_train_first_view")
    page.get_by_role("radio", name="upload").check()
    page.locator("#upload input[type=file]").set_input_files([str(amp_small / f"{s}.csv")
                                                              for s in ("train", "validation", "test")])
    expect(page.locator("#upload").get_by_role("row", name=re.compile("test.csv"))).to_have_count(1)
    model = page.locator("#model").get_by_role("combobox")
    model.fill(str(tiny_models["esm"]))
    model.press("Enter")
    page.get_by_text("Task and labels").click()
    pick(page, "section_data", "single_label_classification", name="problem type")
    page.get_by_role("button", name="Preview dataset").click()
    expect(page.locator("#data_msg")).to_contain_text("dataset OK", timeout=60_000)
    summary = page.locator("#data_summary").inner_text()
    assert "train 96" in summary and "validation 32" in summary and "test 32" in summary
    expect(page.locator("#data_rows")).to_contain_text("amp_0000")
    shot(page, "02_train_dataset_preview")

    set_text(page, "training.epochs", "2")
    page.get_by_label("run name", exact=False).first.fill("amp-upload")
    page.get_by_role("button", name="Preview command").click()
    expect(page.locator("#command")).to_contain_text("plmforge train")
    command = page.locator("#command .cm-content").inner_text().strip()
    shot(page, "03_train_command")

    # the command as shown, run by the CLI (into another directory): the same config
    argv = shlex.split(command)
    assert argv[:2] == ["plmforge", "train"]
    cli_dir = tmp_path / "cli-run"
    exe = Path(sys.executable).with_name("plmforge")
    proc = subprocess.run([str(exe), *argv[1:], f"output.dir={cli_dir}"], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TQDM_DISABLE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]

    t0 = time.time()
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Progress:", timeout=120_000)
    first_update = time.time() - t0
    wait_status(page, ("finished",))
    expect(page.locator("#test_metrics")).to_contain_text("auroc")
    run_dir = ui["runs"] / "amp-upload"
    shot(page, "04_train_finished")
    (ARTIFACTS / "timings.json").write_text(json.dumps({"start_to_first_progress_seconds": round(first_update, 1)}))

    from plmforge.config import load_run_config

    ui_config, cli_config = load_run_config(run_dir), load_run_config(cli_dir)
    assert ui_config.replace(output=cli_config.output) == cli_config
    with page.expect_download() as download:
        page.locator("#download_metrics").click()
    got = pd.read_csv(download.value.path())
    expected = pd.read_csv(run_dir / "test_metrics.csv")
    assert got.equals(expected)
    cli_metrics = json.loads((cli_dir / "test_metrics.json").read_text())["metrics"]
    assert json.loads((run_dir / "test_metrics.json").read_text())["metrics"] == pytest.approx(cli_metrics)
    shown = page.locator("#test_metrics").inner_text()
    assert f"{expected.set_index('metric').loc['auroc', 'value']:.6g}"[:5] in shown


def test_predict_batch_file_and_one_residue_sequence(ui, amp_small):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Predict").click()
    pick(page, "pred_run", "amp-upload")
    page.locator("#pred_file input[type=file]").set_input_files(str(amp_small / "test.csv"))
    page.get_by_role("button", name="Predict file").click()
    expect(page.locator("#pred_msg")).to_contain_text("predicted 32 sequences", timeout=120_000)
    with page.expect_download() as download:
        page.locator("#pred_download").click()
    table = pd.read_csv(download.value.path())
    assert len(table) == 32 and {"id", "prediction", "prob_1"} <= set(table.columns)
    shot(page, "05_predict_batch")

    pick(page, "pred_run", "paratope-residues")
    sequence = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS"
    page.locator("#pred_sequence textarea").fill(sequence)
    page.get_by_role("button", name="Predict sequence").click()
    expect(page.locator("#pred_msg")).to_contain_text("predicted", timeout=120_000)
    spans = page.locator("#pred_residues span[title]")
    expect(spans).to_have_count(len(sequence))  # one coloured span per residue
    expect(page.locator("#pred_table")).to_contain_text("prob_1")
    shot(page, "06_predict_residues")


def test_abort_mid_epoch_then_resume(ui, tiny_models):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("radio", name="catalogue").check()
    pick(page, "catalogue", "amp (single_label_classification, bundled)")
    pick(page, "method", "full")
    set_text(page, "data.max_samples", "300")
    page.get_by_text("Batching").click()
    set_text(page, "batching.batch_size", "1")
    set_text(page, "training.epochs", "2")
    page.get_by_label("run name", exact=False).first.fill("to-abort")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#status")).to_contain_text("to-abort")  # the page follows the new run
    end = time.time() + 120
    while time.time() < end:  # abort in the middle of the first epoch
        text = status_text(page)
        found = re.search(r"step (\d+) of (\d+)", text)
        if "to-abort" in text and found and int(found.group(1)) >= 5:
            break
        time.sleep(0.3)
    page.get_by_role("button", name="Abort").click()
    expect(page.locator("#options_msg")).to_contain_text("aborted", timeout=90_000)
    text = wait_status(page, ("aborted",))
    run_dir = ui["runs"] / "to-abort"
    from plmforge.events import RunProgress

    progress = RunProgress.read(run_dir)
    assert progress.status == "aborted" and 0 < progress.step < progress.total_steps
    assert "Status: aborted" in text
    shot(page, "07_train_aborted")
    page.get_by_role("button", name="Resume").click()
    wait_status(page, ("finished",), timeout=400)
    assert (run_dir / "test_metrics.json").is_file()
    assert RunProgress.read(run_dir).status == "finished"
    shot(page, "08_train_resumed")


def test_broken_file_message(ui, tmp_path):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Train").click()
    bad = tmp_path / "broken.csv"
    bad.write_text("aa_seq,label\nMKTAYIAKQR,1\nMKT1ZZQ,0\nGLFDIVKKV,1\n")
    page.get_by_role("radio", name="upload").check()
    page.locator("#upload").get_by_role("button", name="Clear").click()  # the first test's files
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    expect(page.locator("#upload").get_by_role("row", name=re.compile("broken.csv"))).to_have_count(1)
    # another dataset: what the catalogue said about the last one's task was cleared
    expect(page.locator("#f_data_num_labels textarea, #f_data_num_labels input").first).to_have_value("")
    pick(page, "section_data", "single_label_classification", name="problem type")
    page.get_by_role("button", name="Preview dataset").click()
    message = page.locator("#data_msg")
    expect(message).to_contain_text("broken.csv", timeout=60_000)
    text = message.inner_text()
    assert "broken.csv" in text and "'1'" in text.replace('"', "'")
    shot(page, "09_train_broken_file")


def test_runs_tab_and_evaluate(ui, amp_small):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs_table")
    expect(table).to_contain_text("amp-upload")
    expect(table).to_contain_text("to-abort")
    expect(table).to_contain_text("finished")
    pick(page, "run_pick", "amp-upload")
    expect(page.locator("#run_config")).to_contain_text("single_label_classification")
    expect(page.locator("#run_metrics")).to_contain_text("auroc")
    shot(page, "10_runs")

    page.get_by_role("tab", name="Evaluate").click()
    pick(page, "eval_run", "amp-upload")
    page.locator("#eval_file input[type=file]").set_input_files(str(amp_small / "test.csv"))
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#eval_msg")).to_contain_text("evaluated", timeout=120_000)
    from plmforge.api import evaluate

    expected = evaluate(ui["runs"] / "amp-upload", amp_small / "test.csv").metrics
    with page.expect_download() as download:
        page.locator("#eval_download").click()
    got = pd.read_csv(download.value.path()).set_index("metric")["value"]
    assert got["auroc"] == pytest.approx(expected["auroc"]) and got["mcc"] == pytest.approx(expected["mcc"])
    expect(page.locator("#eval_gallery")).to_contain_text("confusion matrix")
    shot(page, "11_evaluate")
