"""Step 2 of the Train tab: the protein language model and how it is fine-tuned (each method shows only its
own options, generated from its option class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plmforge.methods import METHODS
from plmforge.ui import forms, widgets

INTRO = ("### 2 · Model and method\n*freeze* trains only a small head on the model's embeddings (fast, a good "
         "first run); *lora* and the other adapters also tune the model a little; *full* tunes all of it "
         "(slow on a CPU).")


@dataclass
class ModelStep:
    groups: dict[str, Any]  # method -> its options group


def build(app: Any) -> ModelStep:
    import gradio as gr

    inputs = app.inputs
    gr.Markdown(INTRO, elem_id="step_model")
    with gr.Row():
        inputs["model"] = gr.Dropdown(forms.model_choices(), value="antiberty", label="Model",
                                      allow_custom_value=True, elem_id="model", scale=3,
                                      info="a zoo model, or type a local model directory or HuggingFace id")
        inputs["method"] = gr.Dropdown(list(METHODS), value="freeze", label="Method", elem_id="method", scale=2,
                                       info="how the model is fine-tuned")
    groups = {}
    with gr.Accordion("Method options", open=False, elem_id="method_options"):
        for name, fields_ in app.method_fields.items():
            with gr.Group(visible=name == "freeze") as group:
                gr.Markdown(f"**{name}**: {METHODS[name].description}")
                widgets.grid(fields_, lambda f, n=name: forms.method_key(n, f), inputs)
            groups[name] = group
    return ModelStep(groups)


def wire(app: Any, step: ModelStep) -> None:
    import gradio as gr

    def picked(method: str) -> list[Any]:
        return [gr.update(visible=name == method) for name in step.groups]

    app.inputs["method"].change(picked, app.inputs["method"], list(step.groups.values()))
