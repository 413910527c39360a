"""Step 1 of the Train tab, the data: where it comes from, which column holds what (the file's own column
names, pre-selected by plmforge.data.columns with the reason shown), the task, the split fractions, and
the preview that validates every row exactly as training will."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plmforge.data.catalogue import lookup
from plmforge.ui import forms, views, widgets
from plmforge.ui.views import error_box, ok_box, warning_box

INTRO = ("### 1 · Data\nUpload a table (CSV, TSV, JSON Lines, Parquet) or a FASTA file with your sequences and "
         "labels - or try the bundled example. Its columns are read at once: check the choices below. One file is "
         "split into train, validation and test for you.")
TASK_KEYS = ["data.problem_type", "data.num_labels", "training.metrics", "training.monitor"]


@dataclass
class DataStep:
    preview: Any
    msg: Any
    columns_md: Any
    summary: Any
    rows: Any
    label_plot: Any
    length_plot: Any
    warning: Any
    go_on: Any
    shown: Any  # the preview's accordion: hidden until a preview succeeded


def _field(app: Any, key: str) -> Any:
    """The generated widget of a config key, registered in the form (None when the config lacks it)."""
    try:
        field = forms.field_of(key)
    except KeyError:
        return None
    app.inputs[key] = widgets.field_widget(field)
    return app.inputs[key]


def build(app: Any) -> DataStep:
    import gradio as gr
    import pandas as pd

    inputs = app.inputs
    gr.Markdown(INTRO, elem_id="step_data")
    with gr.Group():
        inputs["dataset_source"] = gr.Radio(list(forms.DATASET_SOURCES), value="catalogue", label="Dataset from",
                                            elem_id="dataset_source",
                                            info="catalogue: bundled examples and public benchmarks")
        inputs["catalogue"] = gr.Dropdown(forms.catalogue_choices(), value="amp", label="Catalogue dataset",
                                          elem_id="catalogue")
        inputs["upload"] = gr.File(file_count="multiple", label="Dataset file(s): one file, or train/validation/test "
                                   "files", file_types=list(forms.DATA_SUFFIXES), visible=False, elem_id="upload")
        inputs["dataset_path"] = gr.Textbox(label="Dataset path (file or split directory on the server)",
                                            visible=False, elem_id="dataset_path")
        inputs["hub_id"] = gr.Textbox(label="HuggingFace dataset id (owner/name)", visible=False, elem_id="hub_id")
    with gr.Row():
        for role in ("sequence", "label", "id"):
            inputs[forms.COLUMN_KEYS[role]] = widgets.column_dropdown(role)
    with gr.Row():
        for role in ("group", "mask"):
            inputs[forms.COLUMN_KEYS[role]] = widgets.column_dropdown(role)
        _field(app, "data.problem_type")
        _field(app, "data.num_labels")
    columns_md = gr.Markdown(elem_id="columns_md")
    warning = gr.HTML(elem_id="data_warning")
    go_on = gr.Checkbox(False, label="These are protein sequences: go on anyway", visible=False, elem_id="go_on")
    with gr.Row():
        _field(app, "data.validation_fraction")
        _field(app, "data.test_fraction")
        preview = gr.Button("Preview dataset", elem_id="preview_dataset")
    msg = gr.HTML(elem_id="data_msg")
    with gr.Accordion("Dataset preview", open=True, visible=False, elem_id="preview_panel") as shown:
        summary = gr.Markdown(elem_id="data_summary")
        rows = gr.Dataframe(pd.DataFrame(columns=views.ROW_COLUMNS), label="First rows", elem_id="data_rows",
                            interactive=False, wrap=False, max_height=320)
        with gr.Row():
            label_plot = gr.Plot(label="Labels", elem_id="label_plot")
            length_plot = gr.Plot(label="Lengths", elem_id="length_plot")
    return DataStep(preview, msg, columns_md, summary, rows, label_plot, length_plot, warning, go_on, shown)


def task_values(problem_type: str | None, num_labels: int | None, metrics: tuple[str, ...] = (),
                monitor: str = "") -> list[Any]:
    import gradio as gr

    return [gr.update(value=problem_type or ""), gr.update(value="" if num_labels is None else str(num_labels)),
            gr.update(value=list(metrics)), gr.update(value=monitor or "")]


def look(app: Any, source: str, catalogue_name: str | None, upload: list[str] | None, path: str | None,
         hub_id: str | None) -> tuple[forms.FileLook | None, str]:
    """The picked dataset's columns as inferred (None where nothing local can be read) and a note."""
    if source == "hub id":
        return None, "The columns of a hub dataset are read when training starts (type their names if needed)."
    try:
        location = forms.dataset_override(source, catalogue_name, upload, path, hub_id, app.upload_dir)
    except Exception:  # noqa: BLE001  (nothing picked yet: nothing to say)
        return None, ""
    first = forms.first_file(location)
    if first is None:
        return None, ""
    return forms.look_at_file(first), ""


def column_outputs(found: forms.FileLook | None, note: str, catalogue_name: str | None = None) -> list[Any]:
    """Updates for the five column menus, the four task fields, the explanation, the warning and go-on."""
    import gradio as gr

    if found is None:  # nothing local to read (a hub dataset): the usual names, or none (read at Start)
        entry = lookup(catalogue_name) if catalogue_name else None
        usual = ("aa_seq", "label") if entry is not None else ()
        menus = [widgets.column_update(usual, {"sequence": "aa_seq", "label": "label"}.get(role) if usual else None)
                 for role in forms.COLUMN_KEYS]
        task = (task_values(entry.problem_type, entry.num_labels, entry.metrics, entry.monitor) if entry is not None
                else task_values(None, None))  # never the previous dataset's task
        if entry is not None and not note:
            note = f"**{catalogue_name}** is read from the HuggingFace Hub when the run starts (columns aa_seq, label)."
        return [*menus, *task, note, "", gr.update(visible=False, value=False)]
    inf = found.inference
    menus = [widgets.column_update(inf.columns, inf.choices[role].column) for role in forms.COLUMN_KEYS]
    entry = lookup(catalogue_name) if catalogue_name else None
    if entry is not None:  # the catalogue knows the task better than a look at the first rows
        task = task_values(entry.problem_type, entry.num_labels, entry.metrics, entry.monitor)
    else:
        task = task_values(inf.problem_type, inf.num_labels)
    text = views.columns_markdown(inf, found.warning)
    warn = warning_box(found.warning + ": check the sequence column") if found.warning else ""
    return [*menus, *task, text, warn, gr.update(visible=bool(found.warning), value=False)]


def wire(app: Any, step: DataStep, form: set[Any], demo: Any) -> None:
    import gradio as gr

    inputs = app.inputs
    task_outputs = [inputs[k] for k in TASK_KEYS]
    menus = [inputs[k] for k in forms.COLUMN_KEYS.values()]
    # a new dataset hides the previous one's preview and its message
    outputs = [*menus, *task_outputs, step.columns_md, step.warning, step.go_on, step.shown, step.msg]
    pickers = [inputs[k] for k in ("dataset_source", "catalogue", "upload", "dataset_path", "hub_id")]

    def detect(source: str, catalogue_name: str | None, upload: list[str] | None, path: str | None,
               hub_id: str | None) -> list[Any]:
        try:
            found, note = look(app, source, catalogue_name, upload, path, hub_id)
        except Exception as exc:  # noqa: BLE001  (a file that cannot be read: say so next to it)
            return [gr.skip()] * 9 + [error_box(exc), "", gr.update(visible=False), gr.Accordion(visible=False), ""]
        return [*column_outputs(found, note, catalogue_name if source == "catalogue" else None),
                gr.Accordion(visible=False), ""]

    def show_source(source: str, *rest: Any) -> list[Any]:
        shown = [gr.update(visible=source == s) for s in ("catalogue", "upload", "local path", "hub id")]
        return shown + detect(source, *rest)

    demo.load(detect, pickers, outputs)  # the bundled example picked when the page opens
    inputs["dataset_source"].change(show_source, pickers, [*pickers[1:], *outputs])
    inputs["catalogue"].input(detect, pickers, outputs)  # a user's pick only (showing it must not refill)
    inputs["upload"].change(detect, pickers, outputs)
    inputs["dataset_path"].submit(detect, pickers, outputs)
    inputs["dataset_path"].blur(detect, pickers, outputs)

    seq_menu, label_menu = inputs[forms.COLUMN_KEYS["sequence"]], inputs[forms.COLUMN_KEYS["label"]]

    def rechoose(source: str, catalogue_name: str | None, upload: list[str] | None, path: str | None,
                 hub_id: str | None, sequence: str | None, label: str | None) -> list[Any]:
        """A sequence or label column picked by hand: the task, the explanation and the warning follow it."""
        skip = [gr.skip()] * (len(task_outputs) + 4)
        try:
            location = forms.dataset_override(source, catalogue_name, upload, path, hub_id, app.upload_dir)
            first = forms.first_file(location)
        except Exception:  # noqa: BLE001  (nothing readable picked: nothing to redo)
            return skip
        if first is None:
            return skip
        try:
            found = forms.look_at_file(first, {"sequence": sequence or None, "label": label or None})
        except Exception as exc:  # noqa: BLE001
            return [*[gr.skip()] * len(task_outputs), error_box(exc), "", gr.skip(), gr.skip()]
        inf = found.inference
        entry = lookup(catalogue_name) if source == "catalogue" and catalogue_name else None
        task = ([gr.skip()] * len(task_outputs) if entry is not None else  # the catalogue knows its task
                task_values(inf.problem_type, inf.num_labels))
        warn = warning_box(found.warning + ": check the sequence column") if found.warning else ""
        return [*task, views.columns_markdown(inf, found.warning), warn,
                gr.update(visible=bool(found.warning), value=False), gr.Accordion(visible=False)]

    for menu in (seq_menu, label_menu):
        menu.input(rechoose, [*pickers, seq_menu, label_menu],
                   [*task_outputs, step.columns_md, step.warning, step.go_on, step.shown])

    def do_preview(data: dict) -> list[Any]:
        import pandas as pd

        try:
            summary = app.check(data)
        except Exception as exc:  # noqa: BLE001  (every problem is shown next to the button)
            return [error_box(exc), "", pd.DataFrame(columns=views.ROW_COLUMNS), None, None,
                    *[gr.skip()] * len(task_outputs), gr.Accordion(visible=False)]
        task = summary.task
        return [ok_box("dataset OK: every row is valid"), views.dataset_markdown(summary, app.shown_dataset(summary.source)),
                views.dataset_rows(summary), views.label_figure(summary), views.length_figure(summary),
                *task_values(task.problem_type, task.num_labels, task.metrics, task.monitor),
                gr.Accordion(visible=True)]

    step.preview.click(do_preview, form, [step.msg, step.summary, step.rows, step.label_plot, step.length_plot,
                                          *task_outputs, step.shown])
