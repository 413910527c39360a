"""The web UI end to end in a real browser (Debian's Chromium driven by Playwright), on a free loopback
port, as a biologist uses it: one CSV whose columns are not the defaults (peptides of the bundled AMP
example, renamed), columns picked for them, a preview, Start with the pretrained AntiBERTy, progress in the
embedding phase, test metrics with intervals and baselines on the page; a FASTA predicted with its own ids;
a file with other columns evaluated; bad data refused at Start; two runs queued on one server; abort and
resume; the command shown equals the run. Screenshots of each stage go to tests/artifacts/ui/.

Run alone: .venv/bin/python -m pytest tests/test_ui_browser.py  (needs `bash scripts/system.sh` once)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from browser_steps import free_port, pick, screenshot, set_text, status_text, upload, value_of, wait_status
from conftest import shared

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
pytestmark = [pytest.mark.browser, pytest.mark.shared_data, pytest.mark.pretrained]


def _lab_files(root: Path, amp_dir: Path) -> dict[str, Path]:
    """What a lab would have: one CSV (name, protein, activity), a labelled hold-out with other column
    names, and a FASTA to score."""
    train = pd.read_csv(amp_dir / "train.csv").groupby("label").head(150)
    one = train.rename(columns={"id": "name", "aa_seq": "protein", "label": "activity"})[["name", "protein",
                                                                                          "activity"]]
    one["name"] = [f"pep{i:04d}" for i in range(len(one))]
    one.to_csv(root / "peptides.csv", index=False)
    test = pd.read_csv(amp_dir / "test.csv").groupby("label").head(30)
    test.rename(columns={"id": "pid", "aa_seq": "seq", "label": "truth"})[["seq", "truth", "pid"]].to_csv(
        root / "holdout.csv", index=False)
    fasta = "".join(f">query_{i:02d} from the bench\n{s}\n" for i, s in enumerate(test["aa_seq"].head(20)))
    (root / "to_score.fasta").write_text(fasta)
    return {"one": root / "peptides.csv", "holdout": root / "holdout.csv", "fasta": root / "to_score.fasta"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory, tiny_models, amp_dir):
    from plmforge.config import load_config
    from plmforge.train.run import train
    from plmforge.ui.app import launch, shutdown

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
    files = _lab_files(root, amp_dir)
    store = os.environ.get("PLMFORGE_CACHE_DIR")
    os.environ["PLMFORGE_CACHE_DIR"] = str(root / "store")  # a fresh store: the first run embeds everything
    port = free_port()
    demo = launch(port=port, runs_dir=runs, work_dir=work, block=False, max_concurrent_runs=1)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US",
                                          accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(30_000)
            t0 = time.time()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Train").wait_for()
            yield {"page": page, "runs": runs, "work": work, "root": root, "demo": demo, "files": files,
                   "opened": t0, "port": port, "browser": browser}
            browser.close()
    finally:
        shutdown(demo)
        demo.close()
        if store is not None:
            os.environ["PLMFORGE_CACHE_DIR"] = store


def shot(page, name: str) -> None:
    """The whole page to tests/artifacts/ui (the docs' screenshots come from tests/test_ui_tutorial.py)."""
    screenshot(page, ARTIFACTS / f"{name}.png")


def test_one_file_from_upload_to_test_metrics_on_the_page(ui, tmp_path):
    """The biologist's path: upload one file, nothing typed, Start; every phase shows progress."""
    from playwright.sync_api import expect

    page, clicks = ui["page"], 0
    # the bundled example is picked when the page opens: its columns are read and shown at once
    expect(page.locator("#columns_md")).to_contain_text("aa_seq", timeout=30_000)
    assert value_of(page, "data.label_column") == "label" and "2 classes" in page.locator("#columns_md").inner_text()
    expect(page.locator("#run_view")).to_be_hidden()  # no empty result boxes before a run
    shot(page, "01_first_view")
    upload(page, [ui["files"]["one"]])
    clicks += 2  # the radio, the file
    # the columns were read from the file and chosen by their content, with the reasons shown
    expect(page.locator("#columns_md")).to_contain_text("protein", timeout=30_000)
    assert value_of(page, "data.sequence_column") == "protein"
    assert value_of(page, "data.label_column") == "activity"
    assert value_of(page, "data.id_column") == "name"
    assert value_of(page, "data.problem_type") == "single_label_classification"
    assert "2 classes" in page.locator("#columns_md").inner_text() or "2 distinct" in \
        page.locator("#columns_md").inner_text()
    page.get_by_role("button", name="Preview dataset").click()
    clicks += 1
    expect(page.locator("#data_msg")).to_contain_text("dataset OK", timeout=60_000)
    summary = page.locator("#data_summary").inner_text()
    assert "train" in summary and "validation" in summary and "test" in summary  # one file, three splits
    expect(page.locator("#data_rows")).to_contain_text("pep0000")
    shot(page, "02_columns_and_preview")

    set_text(page, "training.epochs", "3")
    page.get_by_label("run name", exact=False).first.fill("peptides")
    page.get_by_role("button", name="Preview command").click()
    expect(page.locator("#command")).to_contain_text("plmforge train")
    command = page.locator("#command .cm-content").inner_text().strip()

    t0 = time.time()
    page.get_by_role("button", name="Start", exact=True).click()
    clicks += 1
    seen: list[str] = []
    expect(page.locator("#status")).to_contain_text("peptides", timeout=30_000)
    first_status = time.time() - t0
    embedding_shot = False
    end = time.time() + 300
    while time.time() < end:  # every phase says what it does; catch the embedding phase on screen
        text = status_text(page)
        seen.append(text)
        if "Embedding:" in text and not embedding_shot:
            shot(page, "03_embedding_phase")
            embedding_shot = True
        if "Status: finished" in text or "Status: failed" in text:
            break
        time.sleep(0.2)
    text = wait_status(page, ("finished",), seen=seen)
    finished_after = time.time() - ui["opened"]
    embedding = [t for t in seen if "Embedding:" in t]
    assert embedding, "the embedding phase never showed its progress:\n" + "\n---\n".join(seen[:20])
    assert re.search(r"Embedding:\*?\*? [\d,]+ of [\d,]+ sequences", embedding[-1].replace("**", "")) or \
        re.search(r"[\d,]+ of [\d,]+ sequences", embedding[-1])
    assert any(re.search(r"Elapsed: (0:0[1-9]|0:[1-5]\d|\d+:\d\d)", t.replace("**", "")) for t in seen[:50])
    assert any("setting up" in t for t in seen) or first_status < 2
    # the results on the page: a sentence with the interval and the baseline comparison, and the table
    verdict = page.locator("#verdict").inner_text()
    assert "held-out test proteins" in verdict and "95% interval" in verdict and "baseline" in verdict
    table = page.locator("#test_metrics").inner_text()
    assert "95% CI low" in table and "baseline: composition" in table and "mcc" in table
    expect(page.locator("#run_plots")).to_contain_text("roc")
    page.locator("#run_plots").scroll_into_view_if_needed()  # the plots load when in view
    page.wait_for_function("() => { const im = [...document.querySelectorAll('#run_plots img')];"
                           " return im.length >= 5 && im.every(i => i.complete && i.naturalWidth > 0); }")
    shot(page, "04_finished_with_test_metrics")
    run_dir = ui["runs"] / "peptides"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    embeds = [e for e in events if e["event"] == "embed"]
    blob = json.loads((run_dir / "test_metrics.json").read_text())
    assert embeds and embeds[-1]["done"] == embeds[-1]["total"] and blob["n_samples"] > 0
    with page.expect_download() as download:
        page.locator("#download_metrics").click()
    assert pd.read_csv(download.value.path()).equals(pd.read_csv(run_dir / "test_metrics.csv"))

    # the command shown is this run: the CLI resolves it to the same config
    from plmforge.config import load_config, load_run_config

    argv = shlex.split(command)
    exe = Path(sys.executable).with_name("plmforge")
    proc = subprocess.run([str(exe), *argv[1:], f"output.dir={tmp_path / 'again'}", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp_path / "c.yaml").write_text(proc.stdout.split("# equivalent command:")[0])
    shown, ran = load_config(tmp_path / "c.yaml", []), load_run_config(run_dir)
    assert shown.head.pooling is None and ran.head.pooling == "mean"  # the default head is written as resolved
    import dataclasses

    # the memory plan's choices are written as settled too (left unset in the command)
    assert (shown.model.gradient_checkpointing, shown.batching.micro_batch_tokens) == (None, None)
    assert ran.model.gradient_checkpointing is False and ran.batching.micro_batch_tokens is not None
    assert shown == ran.replace(head=shown.head, output=dataclasses.replace(ran.output, dir=str(tmp_path / "again")),
                                model=shown.model, batching=shown.batching)
    assert ran.model == dataclasses.replace(shown.model, gradient_checkpointing=False)
    assert ran.batching == dataclasses.replace(shown.batching, micro_batch_tokens=ran.batching.micro_batch_tokens)
    (ARTIFACTS / "timings.json").write_text(json.dumps({
        "start_to_first_status_seconds": round(first_status, 1), "open_to_finished_seconds": round(finished_after),
        "clicks": clicks}))


def test_fasta_prediction_keeps_its_ids_and_a_failure_clears_the_download(ui, tmp_path):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Predict").click()
    pick(page, "pred_run", "peptides")
    page.locator("#pred_file input[type=file]").set_input_files(str(ui["files"]["fasta"]))
    page.get_by_role("button", name="Predict file").click()
    expect(page.locator("#pred_msg")).to_contain_text("predicted 20 sequences", timeout=120_000)
    with page.expect_download() as download:
        page.locator("#pred_download").click()
    table = pd.read_csv(download.value.path())
    assert list(table["id"]) == [f"query_{i:02d}" for i in range(20)]  # the FASTA's ids, not 'name'
    header = page.locator("#pred_table thead").inner_text()
    assert header.index("id") < header.index("prediction") < header.index("sequence")
    whole = ui["files"]["fasta"].read_text().splitlines()[1]  # a row clicked shows its sequence whole
    page.locator("#pred_table").get_by_text("query_00", exact=True).filter(visible=True).first.click()
    expect(page.locator("#pred_whole textarea")).to_have_value(re.compile("query_00.*" + whole + "$"))
    shot(page, "05_predict_fasta")
    bad = tmp_path / "broken.csv"
    bad.write_text("protein\nMKTAYIAKQR\nMKT1ZZQ\n")
    page.locator("#pred_file").get_by_role("button", name="Clear").click()
    page.locator("#pred_file input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Predict file").click()
    expect(page.locator("#pred_msg")).to_contain_text("broken.csv", timeout=60_000)
    expect(page.locator("#pred_download")).to_be_hidden()  # the previous result cannot be downloaded as this one

    # one sequence: the prediction in large type; DNA is warned about and predicted only when told to go on
    page.locator("#pred_sequence textarea").fill("ATGCGTACGTTAGCATGCAAGT")
    page.get_by_role("button", name="Predict sequence").click()
    expect(page.locator("#pred_msg")).to_contain_text("DNA", timeout=60_000)
    page.locator("#pred_go_on input").check()
    page.get_by_role("button", name="Predict sequence").click()
    expect(page.locator("#pred_card")).to_contain_text("probability", timeout=60_000)
    page.locator("#pred_go_on input").uncheck()
    page.locator("#pred_sequence textarea").fill("GLFDIVKKVVGALGSLGKKVAKKLLPKL" * 10)
    page.get_by_role("button", name="Predict sequence").click()
    expect(page.locator("#pred_msg")).to_contain_text("predicted", timeout=60_000)  # not the DNA warning
    expect(page.locator("#pred_card")).to_contain_text("probability", timeout=60_000)
    card = page.locator("#pred_card").bounding_box()
    assert card is not None and card["x"] + card["width"] <= 1400  # in view, however long the sequence
    shot(page, "06_predict_one")

    pick(page, "pred_run", "paratope-residues")
    sequence = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS"
    page.locator("#pred_sequence textarea").fill(sequence)
    page.get_by_role("button", name="Predict sequence").click()
    expect(page.locator("#pred_msg")).to_contain_text("predicted", timeout=120_000)
    expect(page.locator("#pred_residues span[title]")).to_have_count(len(sequence))  # one coloured span each
    shot(page, "07_predict_residues")


def test_evaluate_a_file_whose_columns_differ(ui):
    from playwright.sync_api import expect

    from plmforge.api import evaluate

    page = ui["page"]
    page.get_by_role("tab", name="Evaluate").click()
    pick(page, "eval_run", "peptides")
    page.locator("#eval_file input[type=file]").set_input_files(str(ui["files"]["holdout"]))
    expect(page.locator("#eval_columns_md")).to_contain_text("seq", timeout=30_000)
    menus = {r: page.locator(f"#eval_{r}_column input").first.input_value() for r in ("sequence", "label", "id")}
    assert menus == {"sequence": "seq", "label": "truth", "id": "pid"}  # the run's names are not in this file
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#eval_msg")).to_contain_text("evaluated", timeout=120_000)
    expected = evaluate(ui["runs"] / "peptides", ui["files"]["holdout"],
                        columns={"sequence": "seq", "label": "truth", "id": "pid"}).metrics
    with page.expect_download() as download:
        page.locator("#eval_download").click()
    got = pd.read_csv(download.value.path()).set_index("metric")["value"]
    assert got["mcc"] == pytest.approx(expected["mcc"]) and got["auroc"] == pytest.approx(expected["auroc"])
    assert "95% CI low" in page.locator("#eval_metrics").inner_text()
    expect(page.locator("#eval_gallery")).to_contain_text("confusion matrix")
    shot(page, "08_evaluate")


def test_bad_data_is_refused_at_start_and_nothing_is_launched(ui, tmp_path):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Train").click()
    bad = tmp_path / "broken.csv"
    bad.write_text("name,protein,activity\np1,MKTAYIAKQR,1\np2,MKT1ZZQ,0\np3,GLFDIVKKV,1\np4,GLFDIVKKVA,0\n")
    upload(page, [bad])
    page.get_by_label("run name", exact=False).first.fill("never-started")
    jobs = len(ui["demo"].plmforge_app.jobs.jobs)
    page.get_by_role("button", name="Start", exact=True).click()
    message = page.locator("#options_msg")
    expect(message).to_contain_text("broken.csv", timeout=60_000)
    assert "row 2" in message.inner_text() and "'1'" in message.inner_text().replace('"', "'")
    assert not (ui["runs"] / "never-started").exists() and len(ui["demo"].plmforge_app.jobs.jobs) == jobs
    assert "plmforge-error" in message.inner_html()
    shot(page, "09_bad_data_refused")


def test_two_runs_share_one_slot_through_the_queue(ui, tiny_models, amp_dir):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Train").click()
    upload(page, [ui["files"]["one"]])
    expect(page.locator("#columns_md")).to_contain_text("protein", timeout=30_000)
    model = page.locator("#model").get_by_role("combobox")
    model.fill(str(tiny_models["esm"]))
    model.press("Enter")
    pick(page, "method", "full")
    set_text(page, "training.epochs", "2")
    set_text(page, "batching.batch_size", "2")
    names = ("first-of-two", "second-of-two")
    for name in names:
        page.get_by_label("run name", exact=False).first.fill(name)
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.locator("#options_msg")).to_contain_text(name, timeout=60_000)
    assert "queued" in page.locator("#options_msg").inner_text()
    expect(page.locator("#status")).to_contain_text("position 1", timeout=30_000)
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Refresh").click()
    queue = page.locator("#queue_table")
    expect(queue).to_contain_text("second-of-two")
    expect(queue).to_contain_text("queued")
    shot(page, "10_queue")
    page.get_by_role("tab", name="Train").click()
    wait_status(page, ("finished",), timeout=400)  # the second run, once the first left the slot
    from plmforge.events import RunProgress

    first, second = (RunProgress.read(ui["runs"] / n) for n in names)
    assert first.status == second.status == "finished" and second.started >= first.last_time - 1


def test_abort_mid_epoch_then_resume(ui, tiny_models):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("radio", name="catalogue").check()
    pick(page, "catalogue", "amp (single_label_classification, bundled)")
    model = page.locator("#model").get_by_role("combobox")
    model.fill(str(tiny_models["esm"]))
    model.press("Enter")
    pick(page, "method", "full")
    page.get_by_text("Advanced: every other option").click()
    page.get_by_text("Data options").click()
    set_text(page, "data.max_samples", "300")
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
    page.get_by_role("button", name="Resume").click()
    wait_status(page, ("finished",), timeout=400)
    assert (run_dir / "test_metrics.json").is_file()
    assert RunProgress.read(run_dir).status == "finished"
    shot(page, "11_resumed")


def test_runs_tab(ui):
    from playwright.sync_api import expect

    page = ui["page"]
    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs_table")
    expect(table).to_contain_text("peptides")
    expect(table).to_contain_text("to-abort")
    expect(table).to_contain_text("finished")
    pick(page, "run_pick", "peptides")
    expect(page.locator("#run_config")).to_contain_text("single_label_classification")
    expect(page.locator("#run_metrics")).to_contain_text("95% CI low")
    expect(page.locator("#run_verdict")).to_contain_text("held-out test proteins")
    shot(page, "12_runs")


def test_mutations_tab_scans_a_sequence_and_scores_a_dms_file(ui, tmp_path):
    """The biologist's path to mutation effects: a heavy chain pasted as FASTA, AntiBERTy (the default, real
    weights) scans CDR-H1; the heatmap, the ranked table and the CSV equal plmforge.mutate.scan's; a DMS file
    gives ProteinGym's metrics with intervals and a scatter plot; a wrong wild-type letter is refused with the
    row named."""
    import numpy as np
    from playwright.sync_api import expect

    from plmforge.mutate import scan

    heavy = ("EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVSAISGSGGSTYYADSVKGRFTISRDNSKNTLYLQMNSLRAEDTAVYYCAK"
             "DRLSITIRPRYYGLDVWGQGTLVTVSS")
    page = ui["page"]
    page.get_by_role("tab", name="Mutations").click()
    page.locator("#mut_sequence textarea").fill(">my heavy chain\n" + heavy[:60] + "\n" + heavy[60:])
    page.locator("#mut_positions").locator("input, textarea").first.fill("26-33")
    page.get_by_role("button", name="Scan every substitution").click()
    expect(page.locator("#mut_msg")).to_contain_text("152 substitutions at 8 positions", timeout=180_000)
    expect(page.locator("#mut_heatmap img")).to_be_visible()
    with page.expect_download() as download:
        page.locator("#mut_download").click()
    table = pd.read_csv(download.value.path())
    expected = scan("antiberty", heavy, positions="26-33", progress=False).table
    assert list(table["mutant"]) == list(expected["mutant"])
    np.testing.assert_allclose(table["score"], expected["score"], rtol=1e-5)  # (the CSV keeps 6 digits)
    expect(page.locator("#mut_table")).to_contain_text(str(expected["mutant"].iloc[0]))
    shot(page, "13_mutations_scan")

    rng = np.random.default_rng(0)
    muts = [f"{heavy[p - 1]}{p}{a}" for p in range(26, 34) for a in "ADGKLSTY" if a != heavy[p - 1]]
    dms = pd.DataFrame({"mutant": muts, "DMS_score": rng.normal(size=len(muts))})
    dms["DMS_score_bin"] = (dms["DMS_score"] > 0).astype(int)
    dms.to_csv(tmp_path / "assay.csv", index=False)
    page.locator("#mut_dms_file input[type=file]").set_input_files(str(tmp_path / "assay.csv"))
    page.get_by_role("button", name="Score the DMS file").click()
    expect(page.locator("#mut_dms_msg")).to_contain_text(f"{len(muts)} variants scored", timeout=180_000)
    expect(page.locator("#mut_dms_metrics")).to_contain_text("Spearman")
    expect(page.locator("#mut_dms_metrics")).to_contain_text("95% CI low")
    expect(page.locator("#mut_scatter img")).to_be_visible()
    shot(page, "14_mutations_dms")

    dms.loc[2, "mutant"] = "W27A"
    dms.to_csv(tmp_path / "wrong.csv", index=False)
    page.locator("#mut_dms_file").get_by_role("button", name="Clear").click()
    page.locator("#mut_dms_file input[type=file]").set_input_files(str(tmp_path / "wrong.csv"))
    page.get_by_role("button", name="Score the DMS file").click()
    expect(page.locator("#mut_dms_msg")).to_contain_text("row 4", timeout=60_000)
    expect(page.locator("#mut_dms_download")).to_be_hidden()

    # a structure file is for structure-aware models: with AntiBERTy it is refused, naming why
    page.locator("#mut_structure input[type=file]").set_input_files(str(shared("structures", "files", "1A8O.pdb")))
    page.get_by_role("button", name="Scan every substitution").click()
    expect(page.locator("#mut_msg")).to_contain_text("reads sequences only", timeout=60_000)
    expect(page.locator("#mut_heatmap img")).to_be_hidden()
