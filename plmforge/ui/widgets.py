"""Gradio inputs for the generated form fields (plmforge/ui/forms.py) and the column pickers; every widget
gets a stable HTML id (f_<config key>, dots and colons as underscores) that the browser tests use."""

from __future__ import annotations

import re
from typing import Any

from plmforge.ui import forms

ROLE_LABELS = {"sequence": "Sequence column", "label": "Label column", "id": "Id column (optional)",
               "group": "Group column (optional)", "mask": "Mask column (optional, residue tasks)"}
ROLE_HELP = {"sequence": "the column of protein sequences",
             "label": "what the model learns to predict",
             "id": "names the proteins in predictions (row numbers when none)",
             "group": "e.g. a sequence cluster: a group never straddles train, validation and test",
             "mask": "0/1 per residue, 0 = ignore that residue"}
NONE = "(none)"


def elem_id(key: str) -> str:
    return "f_" + re.sub(r"[.:]", "_", key)


def field_widget(field: forms.Field, key: str | None = None) -> Any:
    """The input for one form field: checkbox, number, dropdown or text box."""
    import gradio as gr

    eid = elem_id(key or field.key)
    # "None" is the config file's word for "not set"; in a form that is an empty field
    info = re.sub(r"\bNone\b", "empty", field.help) or None
    if field.kind == "bool" and field.optional and field.default is None:  # three states: automatic, on, off
        return gr.Dropdown(choices=[("(automatic)", ""), ("on", "true"), ("off", "false")], value="",
                           label=field.label, elem_id=eid, info=info)
    if field.kind == "bool":
        return gr.Checkbox(value=bool(field.default), label=field.label, elem_id=eid, info=info)
    if field.kind in ("int", "float") and field.optional:  # a Number cannot be empty: it would show 0
        return gr.Textbox(value="" if field.default is None else str(field.default), label=field.label,
                          elem_id=eid, info=info, placeholder="(empty)")
    if field.kind in ("int", "float"):
        return gr.Number(value=field.default, label=field.label, elem_id=eid, info=info,
                         precision=0 if field.kind == "int" else None)
    if field.kind == "choice":
        choices = [(c, c) for c in field.choices]
        if field.optional:
            choices = [("(automatic)", ""), *choices]
        return gr.Dropdown(choices=choices, value=field.default or "", label=field.label, elem_id=eid, info=info)
    if field.kind == "multi":
        return gr.Dropdown(choices=list(field.choices), value=list(field.default or []), multiselect=True,
                           label=field.label, elem_id=eid, info=info)
    default = ",".join(field.default) if isinstance(field.default, tuple) else (field.default or "")
    return gr.Textbox(value=default, label=field.label, elem_id=eid, info=info)


def grid(fields_: list[forms.Field], key: Any, inputs: dict[str, Any], per_row: int = 3) -> None:
    """Fields three to a row; each widget is registered in `inputs` under key(field)."""
    import gradio as gr

    for i in range(0, len(fields_), per_row):
        with gr.Row():
            for f in fields_[i:i + per_row]:
                k = key(f)
                inputs[k] = field_widget(f, k)


def column_dropdown(role: str, prefix: str | None = None) -> Any:
    """A column picker: the file's own column names once a file is given (typing a name works too). Its id
    is the config key's (f_data_sequence_column), or `<prefix><role>_column` outside the training form."""
    import gradio as gr

    eid = f"{prefix}{role}_column" if prefix else elem_id(forms.COLUMN_KEYS[role])
    return gr.Dropdown(choices=[(NONE, "")], value="", label=ROLE_LABELS[role], info=ROLE_HELP[role],
                       allow_custom_value=True, elem_id=eid, min_width=180)


def column_update(columns: tuple[str, ...], value: str | None) -> dict[str, Any]:
    """New choices (every column of the file, and none) and the chosen one."""
    import gradio as gr

    return gr.update(choices=[(NONE, ""), *[(c, c) for c in columns]], value=value or "")


def plots_gallery(items: list[tuple[str, str]], columns: int = 3) -> Any:
    """A gallery update sized to hold every plot whole (three to a row; click one to enlarge it)."""
    import gradio as gr

    rows = max(1, -(-len(items) // columns))
    return gr.Gallery(value=items, height=40 + 380 * rows)
