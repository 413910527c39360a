"""The Evaluate tab: a finished run and a labelled file give metrics with intervals, plots and a CSV. The
file's columns are offered as menus, pre-set to the run's own columns when the file has them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError
from plmforge.ui import forms, views, widgets
from plmforge.ui.views import error_box, ok_box


def stamped(directory: Path, name: str, suffix: str = "") -> Path:
    return directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"


def run_columns(app: Any, name: str | None) -> dict[str, str | None]:
    """The columns a finished run was trained with (its saved config)."""
    from plmforge.config import load_run_config

    rd = app.run_dir_of(name)
    if rd is None:
        return {}
    data = load_run_config(rd).data
    return {"sequence": data.sequence_column, "label": data.label_column, "id": data.id_column}


def column_menus(roles: tuple[str, ...], prefix: str) -> dict[str, Any]:
    import gradio as gr

    with gr.Row():
        return {role: widgets.column_dropdown(role, prefix) for role in roles}


def file_columns(app: Any, run: str | None, path: str | None, roles: tuple[str, ...], with_labels: bool):
    """Menu updates for a new file's columns (the run's columns kept where the file has them), the
    explanation and a warning for sequences that are probably not proteins."""
    import gradio as gr

    if not path:
        return [gr.skip()] * len(roles) + ["", ""]
    try:
        found = forms.look_at_file(Path(path), run_columns(app, run), with_labels=with_labels)
    except Exception as exc:  # noqa: BLE001
        return [gr.skip()] * len(roles) + ["", error_box(exc)]
    inf = found.inference
    menus = [widgets.column_update(inf.columns, inf.choices[r].column) for r in roles]
    lines = [f"- **{r}**: `{inf.choices[r].column}` - {inf.choices[r].reason}" for r in roles
             if inf.choices[r].column is not None]
    lines += [f"- **{r}: please choose** - {why}" for r, why in inf.ambiguous.items() if r in roles]
    warn = views.warning_box(found.warning) if found.warning else ""
    return [*menus, "\n".join(lines), warn]


def build(app: Any) -> tuple[Any, Any]:
    """Returns (tab, run dropdown)."""
    import gradio as gr

    roles = ("sequence", "label", "id")
    with gr.Tab("Evaluate", id="evaluate") as tab:
        gr.Markdown("A finished run scores a labelled file it has not seen: metrics with 95% intervals, plots "
                    "and the predictions.")
        run = gr.Dropdown([], label="Finished run", elem_id="eval_run")
        upload = gr.File(label="Labelled dataset file", file_types=list(forms.DATA_SUFFIXES), elem_id="eval_file")
        path = gr.Textbox(label="...or a dataset path on the server", elem_id="eval_path")
        with gr.Group(elem_id="eval_columns"):
            menus = column_menus(roles, "eval_")
            explain = gr.Markdown(elem_id="eval_columns_md")
        button = gr.Button("Evaluate", variant="primary", elem_id="eval_button")
        msg = gr.HTML(elem_id="eval_msg")
        with gr.Column(visible=False, elem_id="eval_results") as shown:  # once an evaluation succeeded
            verdict = gr.Markdown(elem_id="eval_verdict")
            table = gr.Dataframe(views.results_table(None), label="Metrics", interactive=False,
                                 elem_id="eval_metrics", wrap=False)
            download = gr.DownloadButton("Download metrics (CSV)", visible=False, elem_id="eval_download")
            gallery = gr.Gallery(label="Plots (click to enlarge)", columns=3, height=420, object_fit="contain",
                                 elem_id="eval_gallery")

    def on_file(name: str | None, uploaded: str | None, typed: str | None):
        return file_columns(app, name, uploaded or (typed or "").strip(), roles, True)

    for trigger in (upload.change, run.change, path.blur):
        trigger(on_file, [run, upload, path], [*menus.values(), explain, msg])

    def do_evaluate(name: str | None, uploaded: str | None, typed: str | None, *chosen: str):
        from plmforge.api import evaluate

        rd = app.run_dir_of(name)
        try:
            if rd is None:
                raise ConfigError("pick a finished run")
            data = uploaded or (typed or "").strip()
            if not data:
                raise ConfigError("upload a labelled dataset file or type its path")
            columns = {r: c for r, c in zip(roles, chosen, strict=True) if c}
            result = evaluate(rd, data, columns=columns)
            out = stamped(app.work_dir / "evaluations", rd.name)
            result.write(out)
        except Exception as exc:  # noqa: BLE001
            return (error_box(exc), "", views.results_table(None), gr.update(visible=False, value=None), [],
                    gr.Column(visible=False))
        items = [(str(p), p.stem.replace("_", " ")) for p in sorted((out / "plots").glob("*.png"))]
        return (ok_box(f"evaluated on {Path(result.data).name} ({len(result.prediction.records)} sequences)"),
                views.results_sentence(result.blob), views.results_table(result.blob),
                gr.DownloadButton(value=str(out / "eval_metrics.csv"), visible=True), widgets.plots_gallery(items),
                gr.Column(visible=True))

    button.click(do_evaluate, [run, upload, path, *menus.values()], [msg, verdict, table, download, gallery, shown])
    return tab, run
