"""The web UI (Gradio): Train, Runs, Evaluate and Predict tabs over the functions the CLI uses.

The training form is generated from the config dataclasses and the registries (plmforge/ui/forms.py);
training runs in its own process (plmforge/ui/jobs.py) and the page follows it by reading the run's
events file once a second; what is drawn comes from plmforge/ui/views.py."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from plmforge.config import config_to_override_text
from plmforge.events import EVENTS_FILE, RunProgress, read_events
from plmforge.methods import METHODS
from plmforge.outputs import read_metrics
from plmforge.ui import forms, tabs, views
from plmforge.ui.jobs import Jobs, is_run_dir, list_runs, run_status
from plmforge.ui.views import error_box, ok_box

log = logging.getLogger("plmforge")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CSS = """
.plmforge-error {border-left: 4px solid #dc2626; background: #fef2f2; padding: 6px 10px; white-space: pre-wrap}
.plmforge-ok {border-left: 4px solid #16a34a; background: #f0fdf4; padding: 6px 10px}
"""


class App:
    """Holds what the callbacks share: the runs directory, the working directory and the jobs."""

    def __init__(self, runs_dir: Path, work_dir: Path) -> None:
        self.runs_dir = runs_dir.resolve()
        self.work_dir = work_dir.resolve()
        self.upload_dir = self.work_dir / "uploads"
        self.jobs = Jobs(self.work_dir)
        self.sections = forms.section_fields()
        self.method_fields = forms.method_fields()
        self.inputs: dict[str, Any] = {}  # form key -> component
        self._loaded: dict[tuple, Any] = {}
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.upload_dir.mkdir(parents=True, exist_ok=True)

    # ---- form -> config ---------------------------------------------------------------------------
    def _values(self, data: dict[Any, Any]) -> dict[str, Any]:
        return {key: data[comp] for key, comp in self.inputs.items() if comp in data}

    def request(self, data: dict[Any, Any], for_preview: bool = False) -> forms.TrainingRequest:
        v = self._values(data)
        model = (v.get("model") or "").strip()
        if not model:
            raise forms.cfgmod.ConfigError("pick a model (or type a local model directory)")
        dataset = forms.dataset_override(v["dataset_source"], v.get("catalogue"), v.get("upload"),
                                         v.get("dataset_path"), v.get("hub_id"), self.upload_dir)
        safe = config_to_override_text  # overrides are read as YAML: a path like "run #3" must stay whole
        overrides = [f"model.name={safe(model)}", f"data.dataset={safe(dataset)}"]
        overrides += forms.overrides_from_values(v, v.get("method") or "freeze")
        name = (v.get("run_name") or "").strip()
        if for_preview:  # the dataset preview does not need a valid run name
            name = name if RUN_NAME.fullmatch(name) else default_run_name()
        if not RUN_NAME.fullmatch(name):
            raise forms.cfgmod.ConfigError(f"run name {name!r}: use letters, digits, '.', '_' and '-' (it becomes "
                                           f"a directory under {self.runs_dir})")
        overrides.append(f"output.dir={safe(str(self.runs_dir / name))}")
        if v.get("overwrite"):
            overrides.append("output.overwrite=true")
        return forms.TrainingRequest.build(overrides)

    def loaded_run(self, rd: Path, load: Any) -> Any:
        """The run's model, loaded once per version of its best/ checkpoint."""
        stamp = (rd / "best" / "model.safetensors").stat().st_mtime if (rd / "best").is_dir() else None
        key = (str(rd), stamp)
        if key not in self._loaded:
            self._loaded = {key: load(rd)}  # keep one model in memory
        return self._loaded[key]

    def run_dir_of(self, name: str | None) -> Path | None:
        if not name:
            return None
        path = (self.runs_dir / name).resolve()
        if path.parent != self.runs_dir or not is_run_dir(path):
            return None
        return path


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


def field_widget(field: forms.Field, elem_id: str) -> Any:
    """The input for one form field: checkbox, number, dropdown or text box."""
    import gradio as gr

    # "None" is the config file's word for "not set"; in a form that is an empty field
    info = re.sub(r"\bNone\b", "empty", field.help) or None
    if field.kind == "bool":
        return gr.Checkbox(value=bool(field.default), label=field.label, elem_id=elem_id, info=info)
    if field.kind in ("int", "float") and field.optional:  # a Number cannot be empty: it would show 0
        return gr.Textbox(value="" if field.default is None else str(field.default), label=field.label,
                          elem_id=elem_id, info=info, placeholder="(empty)")
    if field.kind in ("int", "float"):
        return gr.Number(value=field.default, label=field.label, elem_id=elem_id, info=info,
                         precision=0 if field.kind == "int" else None)
    if field.kind == "choice":
        choices = [(c, c) for c in field.choices]
        if field.optional:
            choices = [("(automatic)", ""), *choices]
        return gr.Dropdown(choices=choices, value=field.default or "", label=field.label, elem_id=elem_id,
                           info=info)
    if field.kind == "multi":
        return gr.Dropdown(choices=list(field.choices), value=list(field.default or []), multiselect=True,
                           label=field.label, elem_id=elem_id, info=info)
    default = ",".join(field.default) if isinstance(field.default, tuple) else (field.default or "")
    return gr.Textbox(value=default, label=field.label, elem_id=elem_id, info=info)


def grid(fields_: list[forms.Field], key: Any, inputs: dict[str, Any], per_row: int = 3) -> None:
    """Fields three to a row; each widget is registered in `inputs` under key(field) and gets the HTML id
    f_<key> (dots and colons as underscores), e.g. f_training_epochs or f_method_lora_rank."""
    import gradio as gr

    for i in range(0, len(fields_), per_row):
        with gr.Row():
            for f in fields_[i:i + per_row]:
                k = key(f)
                inputs[k] = field_widget(f, "f_" + re.sub(r"[.:]", "_", k))


def build(runs_dir: Path, work_dir: Path) -> Any:
    import gradio as gr
    import pandas as pd

    from plmforge.data.catalogue import lookup

    app = App(runs_dir, work_dir)
    inputs = app.inputs

    with gr.Blocks(title="plmforge", analytics_enabled=False) as demo:
        current_run = gr.State(None)
        gr.Markdown("## plmforge: fine-tune protein language models")
        with gr.Tabs():
            # ================================ Train ====================================================
            with gr.Tab("Train", id="train"):
                with gr.Row():
                    with gr.Column(scale=5):
                        inputs["model"] = gr.Dropdown(forms.model_choices(), value="antiberty", label="Model",
                                                      allow_custom_value=True, elem_id="model",
                                                      info="a zoo model, or type a local model directory or "
                                                           "HuggingFace id")
                        with gr.Group():
                            inputs["dataset_source"] = gr.Radio(list(forms.DATASET_SOURCES), value="catalogue",
                                                                label="Dataset from", elem_id="dataset_source")
                            inputs["catalogue"] = gr.Dropdown(forms.catalogue_choices(), value="amp",
                                                              label="Catalogue dataset", elem_id="catalogue")
                            inputs["upload"] = gr.File(file_count="multiple", label="Dataset file(s)",
                                                       file_types=list(forms.DATA_SUFFIXES), visible=False,
                                                       elem_id="upload")
                            inputs["dataset_path"] = gr.Textbox(label="Dataset path (file or split directory)",
                                                                visible=False, elem_id="dataset_path")
                            inputs["hub_id"] = gr.Textbox(label="HuggingFace dataset id", visible=False,
                                                          elem_id="hub_id")
                        preview_data = gr.Button("Preview dataset", elem_id="preview_dataset")
                        data_msg = gr.HTML(elem_id="data_msg")
                        inputs["method"] = gr.Dropdown(list(METHODS), value="freeze", label="Method",
                                                       elem_id="method", info="how the backbone is fine-tuned")
                        method_groups = {}
                        for name, fields_ in app.method_fields.items():
                            with gr.Group(visible=name == "freeze") as group:
                                gr.Markdown(f"**{name}**: {METHODS[name].description}")
                                grid(fields_, lambda f, n=name: forms.method_key(n, f), inputs)
                            method_groups[name] = group
                        for section, fields_ in app.sections.items():
                            with gr.Accordion(forms.SECTION_TITLES[section], open=section == "training",
                                              elem_id=f"section_{section}"):
                                grid(fields_, lambda f: f.key, inputs)
                    with gr.Column(scale=6):
                        with gr.Row():
                            inputs["run_name"] = gr.Textbox(value=default_run_name, label="Run name",
                                                            elem_id="run_name", scale=3,
                                                            info=f"the run directory under {app.runs_dir}")
                            inputs["overwrite"] = gr.Checkbox(False, label="Replace an existing run of this name",
                                                              scale=2)
                        with gr.Row():
                            preview_cmd = gr.Button("Preview command", elem_id="preview_command")
                            start = gr.Button("Start", variant="primary", elem_id="start")
                            abort = gr.Button("Abort", variant="stop", elem_id="abort")
                            resume = gr.Button("Resume", elem_id="resume")
                        options_msg = gr.HTML(elem_id="options_msg")
                        command = gr.Code(label="Command", language="shell", elem_id="command", interactive=False,
                                          lines=2)
                        with gr.Accordion("Dataset preview", open=True):
                            data_md = gr.Markdown(elem_id="data_summary")
                            data_rows = gr.Dataframe(pd.DataFrame(columns=views.ROW_COLUMNS),
                                                     label="First rows", elem_id="data_rows", interactive=False)
                            with gr.Row():
                                label_plot = gr.Plot(label="Labels", elem_id="label_plot")
                                length_plot = gr.Plot(label="Lengths", elem_id="length_plot")
                        with gr.Accordion("Progress", open=True):
                            status_md = gr.Markdown("No run started yet.", elem_id="status")
                            bar = gr.HTML(elem_id="progress_bar")
                            with gr.Row():
                                loss_plot = gr.Plot(label="Loss", elem_id="loss_plot")
                                metric_plot = gr.Plot(label="Validation metrics", elem_id="metric_plot")
                            test_table = gr.Dataframe(views.metrics_table(None), label="Test metrics",
                                                      elem_id="test_metrics", interactive=False)
                            download = gr.DownloadButton("Download test metrics (CSV)", visible=False,
                                                         elem_id="download_metrics")
                            gallery = gr.Gallery(label="Plots", columns=3, height="auto", elem_id="run_plots")
                            console = gr.Textbox(label="Console output", lines=6, max_lines=12,
                                                 elem_id="console", interactive=False)
                # always ticking: a poll that finds nothing new answers with skips, and no answer can switch it
                # off, so no order of answers (a tick racing Start / Abort / Resume) can freeze the page
                timer = gr.Timer(1.0, active=True)

            runs = tabs.runs_tab(app, current_run, timer)
            eval_tab, eval_run = tabs.evaluate_tab(app)
            pred_tab, pred_run = tabs.predict_tab(app)
        form = set(inputs.values())

        # ---- dataset picker ------------------------------------------------------------------------
        task_keys = ["data.problem_type", "data.num_labels", "training.metrics", "training.monitor"]
        task_outputs = [inputs[k] for k in task_keys]
        def cleared() -> list[Any]:  # fresh updates each time (gradio consumes the dicts it is given)
            return [gr.update(value=""), gr.update(value=""), gr.update(value=[]), gr.update(value="")]

        def show_source(source: str, catalogue_name: str | None):
            shown = [gr.update(visible=source == s) for s in ("catalogue", "upload", "local path", "hub id")]
            # what one dataset said about its task must not stick to the next one
            return shown + (catalogue_picked(catalogue_name) if source == "catalogue" else cleared())

        inputs["dataset_source"].change(show_source, [inputs["dataset_source"], inputs["catalogue"]],
                                        [inputs["catalogue"], inputs["upload"], inputs["dataset_path"],
                                         inputs["hub_id"], *task_outputs])
        for picker in (inputs["upload"], inputs["dataset_path"], inputs["hub_id"]):
            picker.change(lambda: [gr.skip(), *cleared()[1:]], None, task_outputs)

        def task_values(problem_type: str, num_labels: int, metrics: tuple[str, ...], monitor: str) -> list[Any]:
            return [gr.update(value=problem_type), gr.update(value=str(num_labels)), gr.update(value=list(metrics)),
                    gr.update(value=monitor)]

        def catalogue_picked(name: str):
            entry = lookup(name) if name else None
            if entry is None:
                return [gr.skip()] * len(task_outputs)
            return task_values(entry.problem_type, entry.num_labels, entry.metrics, entry.monitor)

        # .input: only a user's pick (a programmatic update, e.g. showing or hiding it, must not refill)
        inputs["catalogue"].input(catalogue_picked, inputs["catalogue"], task_outputs)

        def method_picked(method: str):
            return [gr.update(visible=name == method) for name in method_groups]

        inputs["method"].change(method_picked, inputs["method"], list(method_groups.values()))

        # ---- dataset preview -----------------------------------------------------------------------
        def do_preview_dataset(data: dict):
            from plmforge.data.inspect import summarise
            from plmforge.models.backbone import residue_limit

            try:
                config = app.request(data, for_preview=True).config
                summary = summarise(config, residue_limit(config.model))
            except Exception as exc:  # noqa: BLE001  (every problem is shown next to the field)
                return [error_box(exc), "", pd.DataFrame(columns=views.ROW_COLUMNS),
                        None, None, *[gr.skip()] * len(task_outputs)]
            task = summary.task
            return [ok_box("dataset OK: every row is valid"), views.dataset_markdown(summary),
                    views.dataset_rows(summary), views.label_figure(summary), views.length_figure(summary),
                    *task_values(task.problem_type, task.num_labels, task.metrics, task.monitor)]

        preview_data.click(do_preview_dataset, form,
                           [data_msg, data_md, data_rows, label_plot, length_plot, *task_outputs])

        # ---- command, start, abort, resume ---------------------------------------------------------
        def do_preview_command(data: dict):
            try:
                req = app.request(data)
            except Exception as exc:  # noqa: BLE001
                return error_box(exc), ""
            return ok_box("settings OK"), req.command

        preview_cmd.click(do_preview_command, form, [options_msg, command])

        def do_start(data: dict):
            try:
                req = app.request(data)
                rd = req.run_dir
                if rd.exists() and any(rd.iterdir()) and not req.config.output.overwrite:
                    raise forms.cfgmod.ConfigError(f"a run named {rd.name!r} already exists: choose another run "
                                                   "name, tick 'Replace an existing run', or Resume it")
                app.jobs.start(rd, req.argv())
            except Exception as exc:  # noqa: BLE001
                return error_box(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return (ok_box(f"started: {rd}"), req.command, str(rd), gr.Timer(active=True),
                    views.progress_markdown(RunProgress(), "starting", rd))

        start.click(do_start, form, [options_msg, command, current_run, timer, status_md])

        def do_abort(run: str | None):
            if not run or not app.jobs.abort(Path(run)):
                return error_box(RuntimeError("no run of this page is training"))
            return ok_box(f"aborted {run}: finished epochs are kept; Resume continues it")

        abort.click(do_abort, current_run, options_msg)

        def do_resume(run: str | None):
            if not run:
                return error_box(RuntimeError("no run to resume: start one, or pick one in the Runs tab")), \
                    gr.skip(), gr.skip()
            try:
                app.jobs.resume(Path(run))
            except Exception as exc:  # noqa: BLE001
                return error_box(exc), gr.skip(), gr.skip()
            return ok_box(f"resuming {run}"), run, gr.Timer(active=True)

        resume.click(do_resume, current_run, [options_msg, current_run, timer])

        # ---- live progress -------------------------------------------------------------------------
        def poll(run: str | None, seen: tuple | None):
            if not run:
                return [gr.skip()] * 9 + [gr.skip(), seen]
            rd = Path(run)
            job = app.jobs.get(rd)
            events = rd / EVENTS_FILE
            stamp = (run, events.stat().st_size if events.is_file() else -1, job.process.pid if job else None,
                     job.running if job else None)  # a new process (Resume) always shows, even before it writes
            if stamp == seen:  # nothing new: leave the page as it is
                return [gr.skip()] * 9 + [gr.skip(), seen]
            try:
                out = follow(app, rd, job, stamp)
            except Exception as exc:  # noqa: BLE001  (a damaged events file must not stop the page)
                return [gr.skip()] * 8 + [error_box(exc), gr.skip(), stamp]
            if app.jobs.get(rd) is not job:  # a process launched while this tick ran: show it at the next tick
                out[-1] = None
            return out

        seen = gr.State(None)
        timer.tick(poll, [current_run, seen], [status_md, bar, loss_plot, metric_plot, test_table, download, gallery,
                                               console, options_msg, timer, seen])

        # ---- the run lists of Runs, Evaluate and Predict -----------------------------------------------
        def refresh_runs():
            try:
                rows = list_runs(app.runs_dir, app.jobs)
            except Exception as exc:  # noqa: BLE001
                log.warning("listing runs failed: %s", exc)
                rows = []
            finished = [r["run"] for r in rows if r["status"] == "finished"]
            table = pd.DataFrame(rows, columns=tabs.RUN_COLUMNS)
            return (table, gr.update(choices=[r["run"] for r in rows], value=None), gr.update(choices=finished),
                    gr.update(choices=finished))

        refresh_outputs = [runs.table, runs.pick, eval_run, pred_run]
        runs.refresh.click(refresh_runs, None, refresh_outputs)
        demo.load(refresh_runs, None, refresh_outputs)
        for tab in (runs.tab, eval_tab, pred_tab):  # opening a tab shows the runs finished meanwhile
            tab.select(refresh_runs, None, refresh_outputs)

    demo.plmforge_app = app  # for tests and for stopping jobs on exit
    return demo


def follow(app: App, rd: Path, job: Any, stamp: tuple) -> list[Any]:
    """The Train tab's progress outputs for run `rd` (followed through its own process's events)."""
    import gradio as gr

    events = read_events(rd / EVENTS_FILE)
    if job is not None:  # until this process says it started, older events are another process's
        starts = [i for i, e in enumerate(events) if e.get("event") == "start"
                  and e.get("pid") == job.process.pid]
        if not starts:
            events = []
        elif events[starts[-1]].get("resume") is not True:
            events = events[starts[-1]:]
    progress = RunProgress.from_events(events)
    status = run_status(rd, progress, app.jobs) if progress.status != "unknown" else "starting"
    running = job is not None and job.running
    if progress.status == "unknown" and not running and job is not None and job.aborted:
        status = "aborted"
        progress.error = "stopped before training started: nothing was written; Resume starts it again"
    elif progress.status == "unknown" and not running:
        status = "failed"
        code = job.returncode if job is not None else None
        progress.error = (f"the training process stopped (exit code {code}) before it wrote any progress; "
                          "its console output is below")
    test = progress.test or read_metrics(rd)
    csv = rd / "test_metrics.csv"
    return [views.progress_markdown(progress, status, rd), views.progress_bar_html(progress),
            views.loss_figure(progress), views.metrics_figure(progress), views.metrics_table(test),
            gr.DownloadButton(value=str(csv), visible=True) if csv.is_file() else gr.skip(),
            views.run_plots(rd), job.log_tail() if job is not None else "",
            gr.skip(), gr.skip(), stamp]


def exposure_warning(host: str, has_auth: bool) -> str | None:
    """The warning for a UI reachable from other machines without a login."""
    if host in ("127.0.0.1", "localhost", "::1") or has_auth:
        return None
    return (f"WARNING: the UI is bound to {host} without --auth: anyone who can reach this machine can start "
            "training and read its run files; add --auth user:password (or use the default --host 127.0.0.1)")


def launch(host: str = "127.0.0.1", port: int | None = None, runs_dir: str | Path = "runs",
           auth: str | None = None, work_dir: str | Path = ".plmforge-ui", max_upload_mb: int = 200,
           block: bool = True) -> Any:
    """Start the app (loopback by default). Returns the Blocks object (launched) when `block` is False."""
    import os

    work = Path(work_dir).resolve()
    (work / "gradio").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no version check or telemetry: works offline
    os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "gradio"))  # uploads stay in the app's own directory
    os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")
    credentials = None
    if auth:
        if ":" not in auth:
            raise forms.cfgmod.ConfigError("--auth takes user:password")
        user, password = auth.split(":", 1)
        credentials = (user, password)
    warning = exposure_warning(host, credentials is not None)
    if warning:
        log.warning(warning)
    demo = build(Path(runs_dir), work)
    runs = Path(runs_dir).resolve()
    demo.launch(server_name=host, server_port=port, auth=credentials, prevent_thread_lock=True, quiet=True,
                max_file_size=f"{max_upload_mb}mb", allowed_paths=[str(runs), str(work)], show_error=True,
                css=CSS, footer_links=[])
    log.info("plmforge UI at %s (runs in %s)", demo.local_url, runs)
    if not block:
        return demo
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        demo.plmforge_app.jobs.stop_all()
        demo.close()
    return demo
