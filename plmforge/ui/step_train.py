"""Step 3 of the Train tab: the usual training settings (every other option under Advanced, generated from
the config classes), the run's name, Start / Abort / Resume, and then the run itself: what it is doing in
words, progress in every phase, live curves, and the test results with intervals and baselines."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError
from plmforge.events import EVENTS_FILE, RunProgress, read_events
from plmforge.outputs import shown_path
from plmforge.ui import forms, views, widgets
from plmforge.ui.jobs import run_status
from plmforge.ui.views import error_box, ok_box

INTRO = ("### 3 · Train\nName the run and press **Start**: the data is checked first, then the run starts (or "
         "waits in the queue while other runs use the machine). Progress, curves and the test results appear "
         "below. [Documentation](https://github.com/plmforge/plmforge#readme)")


@dataclass
class TrainStep:
    preview_cmd: Any
    start: Any
    abort: Any
    resume: Any
    msg: Any
    command: Any
    status: Any
    bar: Any
    loss_plot: Any
    metric_plot: Any
    verdict: Any
    results: Any
    download: Any
    gallery: Any
    console: Any
    view: Any  # the run's plots, results and console: shown once a run is followed


def build(app: Any, default_run_name: Any) -> TrainStep:
    import gradio as gr

    inputs = app.inputs
    gr.Markdown(INTRO, elem_id="step_train")
    with gr.Row():
        for key in forms.TRAIN_ESSENTIALS:
            inputs[key] = widgets.field_widget(forms.field_of(key))
    with gr.Accordion("Advanced: every other option", open=False, elem_id="advanced"):
        for section, fields_ in forms.advanced_fields().items():
            with gr.Accordion(forms.SECTION_TITLES[section], open=False, elem_id=f"section_{section}"):
                widgets.grid(fields_, lambda f: f.key, inputs)
    with gr.Row():
        inputs["run_name"] = gr.Textbox(value=default_run_name, label="Run name", elem_id="run_name", scale=3,
                                        info=f"the run directory under {shown_path(app.runs_dir)}")
        inputs["overwrite"] = gr.Checkbox(False, label="Replace an existing run of this name", scale=2)
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="start")
        abort = gr.Button("Abort", variant="stop", elem_id="abort")
        resume = gr.Button("Resume", elem_id="resume")
        preview_cmd = gr.Button("Preview command", elem_id="preview_command")
    msg = gr.HTML(elem_id="options_msg")
    command = gr.Code(label="The same run from a terminal", language="shell", elem_id="command",
                      interactive=False, lines=2)
    status = gr.Markdown("No run started yet.", elem_id="status")
    bar = gr.HTML(elem_id="progress_bar")
    with gr.Column(visible=False, elem_id="run_view") as view:
        with gr.Row():
            loss_plot = gr.Plot(label="Loss", elem_id="loss_plot")
            metric_plot = gr.Plot(label="Validation metrics", elem_id="metric_plot")
        verdict = gr.Markdown(elem_id="verdict")
        results = gr.Dataframe(views.results_table(None), label="Test metrics (95% bootstrap intervals) and "
                               "baselines", elem_id="test_metrics", interactive=False, wrap=False, max_height=360)
        download = gr.DownloadButton("Download test metrics (CSV)", visible=False, elem_id="download_metrics")
        gallery = gr.Gallery(label="Plots (click to enlarge)", columns=3, height=420, object_fit="contain",
                             allow_preview=True, elem_id="run_plots")
        console = gr.Textbox(label="Console output", lines=6, max_lines=12, elem_id="console", interactive=False)
    return TrainStep(preview_cmd, start, abort, resume, msg, command, status, bar, loss_plot, metric_plot, verdict,
                     results, download, gallery, console, view)


def wire(app: Any, step: TrainStep, form: set[Any], go_on: Any, current_run: Any, timer: Any) -> None:
    import gradio as gr

    def do_preview_command(data: dict):
        try:
            req = app.request(data)
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), ""
        return ok_box("settings OK"), req.command

    step.preview_cmd.click(do_preview_command, form, [step.msg, step.command])

    def do_start(data: dict, request: gr.Request):
        try:
            req, state = app.start(data, bool(data.get(go_on)), getattr(request, "username", None))
        except Exception as exc:  # noqa: BLE001  (refused: nothing was launched)
            return error_box(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        rd = req.run_dir
        text = (f"started: {rd.name}" if state == "running" else
                f"queued: {rd.name} waits for a free slot (position {app.queue.position(rd)}); Abort removes it")
        return (ok_box(text), req.command, str(rd), gr.Timer(active=True),
                views.progress_markdown(RunProgress(), "starting", rd, clock_from=app.clock(rd)))

    step.start.click(do_start, form | {go_on}, [step.msg, step.command, current_run, timer, step.status])

    def do_abort(run: str | None):
        if run and app.queue.cancel(Path(run)):
            return ok_box(f"removed {Path(run).name} from the queue: nothing was started")
        if not run or not app.jobs.abort(Path(run)):
            return error_box(RuntimeError("no run of this page is training"))
        return ok_box(f"aborted {Path(run).name}: finished epochs are kept; Resume continues it")

    step.abort.click(do_abort, current_run, step.msg)

    def do_resume(run: str | None, request: gr.Request):
        if not run:
            return error_box(RuntimeError("no run to resume: start one, or pick one in the Runs tab")), \
                gr.skip(), gr.skip()
        try:
            state = app.queue.submit_resume(Path(run), getattr(request, "username", None))
        except Exception as exc:  # noqa: BLE001
            return error_box(exc), gr.skip(), gr.skip()
        return ok_box(f"resuming {Path(run).name}" + ("" if state == "running" else " (queued)")), run, \
            gr.Timer(active=True)

    step.resume.click(do_resume, current_run, [step.msg, current_run, timer])

    outputs = [step.status, step.bar, step.loss_plot, step.metric_plot, step.verdict, step.results, step.download,
               step.gallery, step.console, step.view, step.msg]
    seen = gr.State(None)

    def poll(run: str | None, last: tuple | None):
        if not run:
            return [gr.skip()] * len(outputs) + [last]
        rd = Path(run)
        job = app.jobs.get(rd)
        events = rd / EVENTS_FILE
        stamp = (run, events.stat().st_size if events.is_file() else -1, job.process.pid if job else None,
                 job.running if job else None, app.queue.position(rd))
        if stamp == last:  # nothing new: only the clock moves while the process runs
            clock = tick_clock(app, rd, job) if job is not None and job.running else gr.skip()
            return [clock] + [gr.skip()] * (len(outputs) - 1) + [last]
        try:
            out = follow(app, rd, job)
        except Exception as exc:  # noqa: BLE001  (a damaged events file must not stop the page)
            return [gr.skip()] * (len(outputs) - 1) + [error_box(exc), stamp]
        if app.jobs.get(rd) is not job:  # a process launched while this tick ran: show it at the next tick
            stamp = None
        return [*out, stamp]

    # always ticking: a poll that finds nothing new answers with skips, so no order of answers (a tick racing
    # Start / Abort / Resume) can freeze the page
    timer.tick(poll, [current_run, seen], [*outputs, seen])


def tick_clock(app: Any, rd: Path, job: Any) -> str:
    """The status text again with the clock moved on (nothing else is redrawn)."""
    events = own_events(read_events(rd / EVENTS_FILE), job)
    status = "running" if events else "starting"
    return views.progress_markdown(RunProgress.from_events(events), status, rd, clock_from=app.clock(rd))


def own_events(events: list[dict], job: Any) -> list[dict]:
    """The events that describe the job's process: none until it says it started (older events are another
    process's); from its start on, or all of them when it resumed the run."""
    if job is None:
        return events
    starts = [i for i, e in enumerate(events) if e.get("event") == "start" and e.get("pid") == job.process.pid]
    if not starts:
        return []
    return events if events[starts[-1]].get("resume") is True else events[starts[-1]:]


def follow(app: Any, rd: Path, job: Any) -> list[Any]:
    """The progress and results outputs for run `rd` (followed through its own process's events)."""
    import gradio as gr

    position = app.queue.position(rd)
    if position is not None:
        text = views.progress_markdown(RunProgress(), "queued", rd, queued=f"position {position} in the queue")
        return [text, views.progress_bar_html(RunProgress()), None, None, "", views.results_table(None),
                gr.skip(), [], "", gr.Column(visible=False), gr.skip()]
    progress = RunProgress.from_events(own_events(read_events(rd / EVENTS_FILE), job))
    status = run_status(rd, progress, app.jobs) if progress.status != "unknown" else "starting"
    running = job is not None and job.running
    message = gr.skip()
    if progress.status == "unknown" and not running and job is not None and job.aborted:
        status = "aborted"
        progress.error = "stopped before training started: nothing was written; Resume starts it again"
    elif progress.status == "unknown" and not running and job is not None:
        status = "failed"
        progress.error = views.failure_reason(job.log_tail(60)) or (
            f"the training process stopped (exit code {job.returncode}) before it wrote any progress; its console "
            "output is below")
    if status == "failed":
        message = error_box(ConfigError(views.plain_error(progress.error or "the run failed")))
    blob = views.read_test_blob(rd) if progress.status == "finished" or progress.test else None
    csv = rd / "test_metrics.csv"
    has_test = progress.status != "finished" or (rd / "test_metrics.json").is_file()
    return [views.progress_markdown(progress, status, rd, clock_from=app.clock(rd)),
            views.progress_bar_html(progress), views.loss_figure(progress), views.metrics_figure(progress),
            views.results_sentence(blob, has_test), views.results_table(blob),
            gr.DownloadButton(value=str(csv), visible=True) if csv.is_file() else gr.skip(),
            widgets.plots_gallery(views.run_plots(rd)), job.log_tail() if job is not None else "", gr.Column(visible=True), message]
