"""The web UI (Gradio): the Train tab's three steps, and the Runs, Evaluate, Predict and Mutations tabs, over
the functions the CLI uses.

Where things are: step_data.py, step_model.py and step_train.py are the Train tab's steps; tab_runs.py,
tab_evaluate.py, tab_predict.py and tab_mutate.py the other tabs; forms.py reads the training form from the config classes;
widgets.py makes its inputs; views.py draws what is shown (markdown, tables, figures) from package objects;
jobs.py runs training processes and queue.py decides when they start. This module holds what the callbacks
share (App) and assembles the page."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from plmforge.config import config_to_override_text
from plmforge.errors import ConfigError, DataError
from plmforge.outputs import shown_path
from plmforge.ui import forms, step_data, step_model, step_train, tab_evaluate, tab_mutate, tab_predict, tab_runs
from plmforge.ui.jobs import Jobs, is_run_dir, list_runs
from plmforge.ui.queue import RunQueue

log = logging.getLogger("plmforge")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CSS = """
.plmforge-error {border-left: 4px solid #dc2626; background: #fef2f2; padding: 6px 10px; white-space: pre-wrap}
.plmforge-ok {border-left: 4px solid #16a34a; background: #f0fdf4; padding: 6px 10px}
.plmforge-warning {border-left: 4px solid #d97706; background: #fffbeb; padding: 6px 10px}
.plmforge-card {border: 1px solid #d1d5db; border-radius: 8px; padding: 10px 14px}
"""


class App:
    """Holds what the callbacks share: the runs directory, the working directory and the jobs."""

    def __init__(self, runs_dir: Path, work_dir: Path, max_concurrent_runs: int | None = None) -> None:
        self.runs_dir = runs_dir.resolve()
        self.work_dir = work_dir.resolve()
        self.upload_dir = self.work_dir / "uploads"
        self.jobs = Jobs(self.work_dir)
        self.queue = RunQueue(self.jobs, self.work_dir / "queue.json", max_concurrent_runs, runs_dir=self.runs_dir)
        self.sections = forms.section_fields()
        self.method_fields = forms.method_fields()
        self.inputs: dict[str, Any] = {}  # form key -> component
        self._loaded: dict[tuple, Any] = {}
        self._mlm: tuple[str, Any] | None = None  # the Mutations tab's model, kept while it is the one picked
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.upload_dir.mkdir(parents=True, exist_ok=True)

    def shown_dataset(self, source: Any) -> str:
        """A dataset as the page names it: uploaded files by their own names, anything else by its path
        (relative to the folder the UI was started in when it lies inside it) or catalogue / hub name."""
        path = Path(str(source))
        try:
            path.resolve().relative_to(self.upload_dir)
        except (ValueError, OSError):
            return shown_path(path) if path.exists() else str(source)
        names = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
        return f"{', '.join(names)} (uploaded)"

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

    def check(self, data: dict[Any, Any]) -> Any:
        """Validate every row of the form's dataset exactly as training will (the preview, and Start)."""
        from plmforge.data.inspect import summarise
        from plmforge.models.backbone import residue_limit

        config = self.request(data, for_preview=True).config
        return summarise(config, residue_limit(config.model))

    def start(self, data: dict[Any, Any], go_on: bool, user: str | None) -> tuple[forms.TrainingRequest, str]:
        """Check the settings and every row of the data in this process, then start the run or queue it;
        anything wrong is raised before a process is launched. Returns the request and running/queued."""
        req = self.request(data)
        rd = req.run_dir
        from plmforge.owned import check_output_dir
        from plmforge.train.run import run_inputs

        check_output_dir(rd, "run", overwrite=req.config.output.overwrite, inputs=run_inputs(req.config),
                         how="tick 'Replace an existing run of this name'",
                         other="choose another run name (or Resume it)")
        self.check(data)
        location = req.config.data.train or req.config.data.dataset or ""
        try:
            first = forms.first_file(location)
        except DataError:  # e.g. a FLIP layout: checked above by the same reader as training's
            first = None
        chosen = {"sequence": req.config.data.sequence_column} if req.config.data.sequence_column else None
        warning = forms.look_at_file(first, chosen).warning if first is not None else None
        if warning and not go_on:
            raise ConfigError(f"{warning}: pick the right sequence column, or tick 'go on anyway' in step 1")
        return req, self.queue.submit(rd, req.argv(), user)

    def clock(self, rd: Path) -> float | None:
        """When this page started the run's process (its clock runs from there)."""
        job = self.jobs.get(rd)
        return job.started if job is not None else None

    def loaded_run(self, rd: Path, load: Any) -> Any:
        """The run's model, loaded once per version of its best/ checkpoint."""
        stamp = (rd / "best" / "model.safetensors").stat().st_mtime if (rd / "best").is_dir() else None
        key = (str(rd), stamp)
        if key not in self._loaded:
            self._loaded = {key: load(rd)}  # keep one model in memory
        return self._loaded[key]

    def masked_lm(self, name: str) -> Any:
        """The masked LM (or ensemble) the Mutations tab scores with, loaded once while it stays picked."""
        from plmforge.mutate.lm import load_scorer

        if not name:
            raise ConfigError("pick a model (a masked language model, e.g. antiberty)")
        if self._mlm is None or self._mlm[0] != name:
            self._mlm = None  # the previous one is let go before the next loads
            self._mlm = (name, load_scorer(name))
        return self._mlm[1]

    def run_dir_of(self, name: str | None) -> Path | None:
        if not name:
            return None
        path = (self.runs_dir / name).resolve()
        if path.parent != self.runs_dir or not is_run_dir(path):
            return None
        return path


def default_run_name() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S")


def build(runs_dir: Path, work_dir: Path, max_concurrent_runs: int | None = None) -> Any:
    import gradio as gr

    app = App(runs_dir, work_dir, max_concurrent_runs)
    with gr.Blocks(title="plmforge", analytics_enabled=False) as demo:
        current_run = gr.State(None)
        gr.Markdown("## plmforge: train a protein property predictor\nThree steps: your data, a model, Start. "
                    "Then predict with the run in the Predict tab.")
        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                data = step_data.build(app)
                model = step_model.build(app)
                train = step_train.build(app, default_run_name)
                # always ticking; a poll that finds nothing new answers with skips
                timer = gr.Timer(1.0, active=True)
            runs = tab_runs.build(app, current_run, timer)
            eval_tab, eval_run = tab_evaluate.build(app)
            pred_tab, pred_run = tab_predict.build(app)
            tab_mutate.build(app)
        form = set(app.inputs.values())
        step_data.wire(app, data, form, demo)
        step_model.wire(app, model)
        step_train.wire(app, train, form, data.go_on, current_run, timer)
        wire_lists(app, demo, runs, eval_run, pred_run, [runs.tab, eval_tab, pred_tab])
    demo.plmforge_app = app  # for tests and for stopping jobs on exit
    return demo


def wire_lists(app: App, demo: Any, runs: tab_runs.RunsTab, eval_run: Any, pred_run: Any, tabs: list[Any]) -> None:
    """The run lists of Runs, Evaluate and Predict, and the queue, refreshed on load, on Refresh and when a
    tab is opened (showing the runs finished meanwhile)."""
    import gradio as gr
    import pandas as pd

    def refresh():
        try:
            rows = list_runs(app.runs_dir, app.jobs)
        except Exception as exc:  # noqa: BLE001
            log.warning("listing runs failed: %s", exc)
            rows = []
        finished = [r["run"] for r in rows if r["status"] == "finished"]
        queued = [q["run"] for q in app.queue.rows() if q["state"] == "queued"]
        table = pd.DataFrame(rows, columns=tab_runs.RUN_COLUMNS)
        return (table, pd.DataFrame(app.queue.rows(), columns=tab_runs.QUEUE_COLUMNS),
                gr.update(choices=[r["run"] for r in rows] + queued, value=None), gr.update(choices=finished),
                gr.update(choices=finished))

    outputs = [runs.table, runs.queue, runs.pick, eval_run, pred_run]
    runs.refresh.click(refresh, None, outputs)
    demo.load(refresh, None, outputs)
    for tab in tabs:
        tab.select(refresh, None, outputs)


def exposure_warning(host: str, has_auth: bool) -> str | None:
    """The warning for a UI reachable from other machines without a login."""
    if host in ("127.0.0.1", "localhost", "::1") or has_auth:
        return None
    return (f"WARNING: the UI is bound to {host} without --auth: anyone who can reach this machine can start "
            "training and read its run files; add --auth user:password (or use the default --host 127.0.0.1)")


def check_host(host: str) -> None:
    """The interface to listen on must be an address of this machine (before the port is looked at)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise forms.cfgmod.ConfigError(f"--host {host!r} is not an address or a known host name ({exc}); use "
                                       "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.bind((address[0], 0))
            return
        except OSError:
            continue
    raise forms.cfgmod.ConfigError(f"--host {host!r} is not an address of this machine, so nothing can listen on "
                                   "it; use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")


def launch(host: str = "127.0.0.1", port: int | None = None, runs_dir: str | Path = "runs",
           auth: str | None = None, work_dir: str | Path = ".plmforge-ui", max_upload_mb: int = 200,
           block: bool = True, max_concurrent_runs: int | None = None) -> Any:
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
        if not user.strip() or not password:
            raise forms.cfgmod.ConfigError("--auth takes user:password with a user name and a password, e.g. "
                                           "--auth alice:a-long-secret")
        credentials = (user, password)
    check_host(host)
    warning = exposure_warning(host, credentials is not None)
    if warning:
        log.warning(warning)
    demo = build(Path(runs_dir), work, max_concurrent_runs)
    runs = Path(runs_dir).resolve()
    demo.launch(server_name=host, server_port=port, auth=credentials, prevent_thread_lock=True, quiet=True,
                max_file_size=f"{max_upload_mb}mb", allowed_paths=[str(runs), str(work)], show_error=True,
                css=CSS, footer_links=[])
    demo.plmforge_app.queue.start_background()
    log.info("plmforge UI at %s (runs in %s; at most %d run(s) at once, the others wait in a queue)",
             demo.local_url, runs, demo.plmforge_app.queue.max_concurrent)
    if not block:
        return demo
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(demo)
        demo.close()
    return demo


def shutdown(demo: Any) -> None:
    """Stop the queue, then every training process of this server (their runs are put back at the head of
    the queue as resumes when the server starts again)."""
    app = demo.plmforge_app
    app.queue.stop()
    app.jobs.stop_all()
