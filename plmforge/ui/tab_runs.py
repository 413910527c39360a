"""The Runs tab: every run under the runs directory with its status and who started it, the queue of runs
waiting for a slot (cancel one), and one run opened: status, test results, plots, files, config; resume it."""

from dataclasses import dataclass
from typing import Any

from plmforge.events import RunProgress
from plmforge.ui import views, widgets
from plmforge.ui.jobs import run_status
from plmforge.ui.views import error_box, ok_box

RUN_COLUMNS = ["run", "status", "user", "model", "method", "best", "test", "date"]
QUEUE_COLUMNS = ["run", "state", "position", "user", "submitted"]


@dataclass
class RunsTab:
    tab: Any
    refresh: Any  # button
    table: Any
    pick: Any  # dropdown of every run
    queue: Any  # the queue table


def build(app: Any, current_run: Any, timer: Any) -> RunsTab:
    import gradio as gr
    import pandas as pd

    with gr.Tab("Runs", id="runs") as tab:
        refresh = gr.Button("Refresh", elem_id="runs_refresh")
        table = gr.Dataframe(pd.DataFrame(columns=RUN_COLUMNS), label="Runs", elem_id="runs_table",
                             interactive=False, wrap=False, max_height=400)
        queue = gr.Dataframe(pd.DataFrame(columns=QUEUE_COLUMNS), label="Queue (runs in progress and waiting)",
                             elem_id="queue_table", interactive=False)
        pick = gr.Dropdown([], label="Open run", elem_id="run_pick")
        with gr.Row():
            resume = gr.Button("Resume this run", elem_id="run_resume")
            cancel = gr.Button("Remove from the queue", elem_id="run_cancel")
        msg = gr.HTML(elem_id="run_msg")
        with gr.Column(visible=False, elem_id="run_opened") as opened:  # shown once a run is picked
            status_md = gr.Markdown(elem_id="run_status")
            verdict = gr.Markdown(elem_id="run_verdict")
            metrics = gr.Dataframe(views.results_table(None), label="Test metrics", interactive=False,
                                   elem_id="run_metrics", wrap=False)
            gallery = gr.Gallery(label="Plots (click to enlarge)", columns=3, height=420, object_fit="contain",
                                 elem_id="run_gallery")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="run_files")
            config = gr.Code(label="config.yaml", language="yaml", interactive=False, elem_id="run_config")

    def open_run(name: str | None):
        rd = app.run_dir_of(name)
        if rd is None:
            return "", "", None, [], None, "", gr.Column(visible=False)
        progress = RunProgress.read(rd)
        blob = views.read_test_blob(rd)
        has_test = progress.status != "finished" or blob is not None
        return (views.progress_markdown(progress, run_status(rd, progress, app.jobs), rd),
                views.results_sentence(blob, has_test), views.results_table(blob),
                widgets.plots_gallery(views.run_plots(rd)), views.run_files(rd), (rd / "config.yaml").read_text(),
                gr.Column(visible=True))

    pick.change(open_run, pick, [status_md, verdict, metrics, gallery, files, config, opened])

    def resume_picked(name: str | None, request: gr.Request):
        rd = app.run_dir_of(name)
        if rd is None:
            return error_box(RuntimeError("pick a run first")), gr.skip(), gr.skip()
        status = run_status(rd, jobs=app.jobs)
        if status in ("finished", "running"):
            return error_box(RuntimeError(f"{rd.name} is {status}: nothing to resume")), gr.skip(), gr.skip()
        try:
            state = app.queue.submit_resume(rd, getattr(request, "username", None))
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), gr.skip(), gr.skip()
        return (ok_box(f"resuming {rd.name}" + ("" if state == "running" else " (queued)") +
                       ": follow it in the Train tab"), str(rd), gr.Timer(active=True))

    resume.click(resume_picked, pick, [msg, current_run, timer])

    def cancel_picked(name: str | None):
        if not name or not app.queue.cancel(app.runs_dir / name):
            return error_box(RuntimeError(f"{name or 'no run'} is not waiting in the queue"))
        return ok_box(f"removed {name} from the queue: nothing was started")

    cancel.click(cancel_picked, pick, msg)
    return RunsTab(tab, refresh, table, pick, queue)
