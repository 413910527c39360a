"""The Runs, Evaluate and Predict tabs: each builds its components and wires its own events (called inside
the page's gr.Blocks by plmforge/ui/app.py, which keeps the Train tab and the cross-tab refresh)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError
from plmforge.events import RunProgress
from plmforge.outputs import read_metrics
from plmforge.ui import forms, views
from plmforge.ui.jobs import run_status
from plmforge.ui.views import error_box, ok_box

RUN_COLUMNS = ["run", "status", "model", "method", "best", "test", "date"]


@dataclass
class RunsTab:
    tab: Any
    refresh: Any  # button
    table: Any
    pick: Any  # dropdown of every run


def runs_tab(app: Any, current_run: Any, timer: Any) -> RunsTab:
    """Every run with its status; open one (status, metrics, plots, files, config) or resume it, which the
    Train tab then follows through `current_run` and `timer`."""
    import gradio as gr
    import pandas as pd

    with gr.Tab("Runs", id="runs") as tab:
        refresh = gr.Button("Refresh", elem_id="runs_refresh")
        table = gr.Dataframe(pd.DataFrame(columns=RUN_COLUMNS), label="Runs", elem_id="runs_table",
                             interactive=False)
        pick = gr.Dropdown([], label="Open run", elem_id="run_pick")
        with gr.Row():
            resume = gr.Button("Resume this run", elem_id="run_resume")
        msg = gr.HTML(elem_id="run_msg")
        status_md = gr.Markdown(elem_id="run_status")
        metrics = gr.Dataframe(views.metrics_table(None), label="Test metrics", interactive=False,
                               elem_id="run_metrics")
        gallery = gr.Gallery(label="Plots", columns=3, height="auto", elem_id="run_gallery")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="run_files")
        config = gr.Code(label="config.yaml", language="yaml", interactive=False, elem_id="run_config")

    def open_run(name: str | None):
        rd = app.run_dir_of(name)
        if rd is None:
            return "", None, [], None, ""
        progress = RunProgress.read(rd)
        return (views.progress_markdown(progress, run_status(rd, progress, app.jobs), rd),
                views.metrics_table(progress.test or read_metrics(rd)), views.run_plots(rd),
                views.run_files(rd), (rd / "config.yaml").read_text())

    pick.change(open_run, pick, [status_md, metrics, gallery, files, config])

    def resume_picked(name: str | None):
        rd = app.run_dir_of(name)
        if rd is None:
            return error_box(RuntimeError("pick a run first")), gr.skip(), gr.skip()
        status = run_status(rd, jobs=app.jobs)
        if status in ("finished", "running"):
            return error_box(RuntimeError(f"{rd.name} is {status}: nothing to resume")), gr.skip(), gr.skip()
        try:
            app.jobs.resume(rd)
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), gr.skip(), gr.skip()
        return ok_box(f"resuming {rd.name}: follow it in the Train tab"), str(rd), gr.Timer(active=True)

    resume.click(resume_picked, pick, [msg, current_run, timer])
    return RunsTab(tab, refresh, table, pick)


def _stamped(directory: Path, name: str, suffix: str = "") -> Path:
    return directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"


def evaluate_tab(app: Any) -> tuple[Any, Any]:
    """A finished run + a labelled file -> metrics, plots and a CSV. Returns (tab, run dropdown)."""
    import gradio as gr

    with gr.Tab("Evaluate", id="evaluate") as tab:
        run = gr.Dropdown([], label="Finished run", elem_id="eval_run")
        upload = gr.File(label="Labelled dataset file", file_types=list(forms.DATA_SUFFIXES), elem_id="eval_file")
        path = gr.Textbox(label="...or a dataset path", elem_id="eval_path")
        button = gr.Button("Evaluate", variant="primary", elem_id="eval_button")
        msg = gr.HTML(elem_id="eval_msg")
        table = gr.Dataframe(views.metrics_table(None), label="Metrics", interactive=False, elem_id="eval_metrics")
        download = gr.DownloadButton("Download metrics (CSV)", visible=False, elem_id="eval_download")
        gallery = gr.Gallery(label="Plots", columns=3, height="auto", elem_id="eval_gallery")

    def do_evaluate(name: str | None, uploaded: str | None, typed: str | None):
        from plmforge.api import evaluate

        rd = app.run_dir_of(name)
        try:
            if rd is None:
                raise ConfigError("pick a finished run")
            data = uploaded or (typed or "").strip()
            if not data:
                raise ConfigError("upload a labelled dataset file or type its path")
            result = evaluate(rd, data)
            out = _stamped(app.work_dir / "evaluations", rd.name)
            result.write(out)
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), None, gr.skip(), []
        items = [(str(p), p.stem.replace("_", " ")) for p in sorted((out / "plots").glob("*.png"))]
        return (ok_box(f"evaluated on {result.data} ({len(result.prediction.records)} sequences)"),
                views.metrics_table(result.metrics), gr.DownloadButton(value=str(out / "eval_metrics.csv"),
                                                                       visible=True), items)

    button.click(do_evaluate, [run, upload, path], [msg, table, download, gallery])
    return tab, run


def predict_tab(app: Any) -> tuple[Any, Any]:
    """One sequence (residue tasks coloured per residue) or a batch file -> predictions and a CSV.
    Returns (tab, run dropdown)."""
    import gradio as gr

    with gr.Tab("Predict", id="predict") as tab:
        run = gr.Dropdown([], label="Finished run", elem_id="pred_run")
        sequence = gr.Textbox(label="One sequence", lines=3, elem_id="pred_sequence")
        one = gr.Button("Predict sequence", variant="primary", elem_id="pred_one")
        upload = gr.File(label="...or a batch file (CSV, TSV, JSONL, Parquet, FASTA)",
                         file_types=list(forms.DATA_SUFFIXES), elem_id="pred_file")
        batch = gr.Button("Predict file", elem_id="pred_batch")
        msg = gr.HTML(elem_id="pred_msg")
        residues = gr.HTML(elem_id="pred_residues")
        table = gr.Dataframe(label="Predictions", interactive=False, elem_id="pred_table")
        download = gr.DownloadButton("Download predictions (CSV)", visible=False, elem_id="pred_download")
    outputs = [msg, residues, table, download]

    def predict_with(name: str | None, what: Any):
        from plmforge.api import load_run, predict

        rd = app.run_dir_of(name)
        if rd is None:
            raise ConfigError("pick a finished run")
        loaded = app.loaded_run(rd, load_run)
        result = predict(loaded, what)
        out = _stamped(app.work_dir / "predictions", rd.name, ".csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        written = result.write(out)
        html = ""
        if loaded.task.problem.per_residue:
            html = views.residue_html(result.table.head(5000), loaded.config.data.residue_classes)
        return result, written[0], html

    def do_predict_one(name: str | None, text: str):
        lines = [ln for ln in (text or "").splitlines() if not ln.lstrip().startswith(">")]  # FASTA header
        seq = "".join("".join(lines).split())
        try:
            if not seq:
                raise ConfigError("type or paste a protein sequence")
            result, path, html = predict_with(name, [seq])
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), "", None, gr.skip()
        return ok_box("predicted"), html, result.table, gr.DownloadButton(value=str(path), visible=True)

    one.click(do_predict_one, [run, sequence], outputs)

    def do_predict_file(name: str | None, uploaded: str | None, progress=gr.Progress(track_tqdm=True)):
        try:
            if not uploaded:
                raise ConfigError("upload a file of sequences first")
            result, path, html = predict_with(name, Path(uploaded))
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), "", None, gr.skip()
        shown = result.frames.get("_sequences", result.table)
        return (ok_box(f"predicted {len(result.records)} sequences: {Path(path).name}"), html, shown.head(200),
                gr.DownloadButton(value=str(path), visible=True))

    batch.click(do_predict_file, [run, upload], outputs)
    return tab, run
