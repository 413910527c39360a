"""The web UI's pure layers (no browser): the form generated from the config dataclasses, the command
builder (the previewed command runs as shown and gives the same config), the dataset picker, the views
and the runs list."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from plmforge.config import RunConfig, config_to_override_text, load_run_config
from plmforge.errors import ConfigError
from plmforge.events import EVENTS_FILE, EventLog, RunProgress
from plmforge.methods import METHODS
from plmforge.ui import forms, views
from plmforge.ui.jobs import list_runs, run_status


def test_every_config_field_and_method_option_is_in_the_form():
    import typing

    sections = forms.section_fields()
    hints = typing.get_type_hints(RunConfig)
    for name, skip in forms.SECTIONS.items():
        cls = hints[name]
        expected = {f.name for f in dataclasses.fields(cls)} - set(skip)
        assert {f.name for f in sections[name]} == expected, name
    methods = forms.method_fields()
    assert set(methods) == set(METHODS)
    for name, spec in METHODS.items():
        assert {f.name for f in methods[name]} == {f.name for f in dataclasses.fields(spec.options)}
    lora = {f.name: f for f in methods["lora"]}
    assert lora["rank"].kind == "int" and lora["rank"].default == 8 and "rank" in lora["rank"].help.lower()
    assert lora["target_modules"].kind == "list" and lora["target_modules"].optional
    assert {f.name: f for f in methods["qlora"]}["quant_type"].choices == ("nf4", "fp4")
    training = {f.name: f for f in sections["training"]}
    assert training["scheduler"].kind == "choice" and "cosine" in training["scheduler"].choices
    assert training["metrics"].kind == "multi" and "mcc" in training["metrics"].choices
    assert {f.name: f for f in sections["head"]}["pooling"].optional  # blank = the problem type's default


def test_values_at_their_defaults_give_no_overrides_and_changes_give_exact_ones():
    defaults = {f.key: f.default for fs in forms.section_fields().values() for f in fs}
    defaults |= {forms.method_key("lora", f): f.default for f in forms.method_fields()["lora"]}
    assert forms.overrides_from_values(defaults, "lora") == ["method.name=lora"]
    changed = dict(defaults)
    changed.update({"training.learning_rate": 0.0007, "training.epochs": 3.0, "training.metrics": ["mcc", "auroc"],
                    "head.pooling": "attention1d", "model.max_length": "", forms.method_key("lora", forms.Field(
                        "method.rank", "rank", "int", 8, False)): 4, "training.mixed_precision": "bf16",
                    "data.residue_classes": "H, E, C"})
    got = forms.overrides_from_values(changed, "lora")
    assert set(got) == {"method.name=lora", "training.learning_rate=0.0007", "training.epochs=3",
                        "training.metrics=mcc,auroc", "head.pooling=attention1d", "method.rank=4",
                        "training.mixed_precision=bf16", "data.residue_classes=H,E,C"}
    with pytest.raises(ConfigError, match="training.epochs must be a whole number"):
        forms.overrides_from_values({**defaults, "training.epochs": 2.5}, "lora")


def test_invalid_values_are_refused_with_the_key_and_choices():
    with pytest.raises(ConfigError, match="training.scheduler"):
        forms.TrainingRequest.build(["data.dataset=amp", "training.scheduler=sometimes"])
    with pytest.raises(ConfigError, match="method.rank"):
        forms.TrainingRequest.build(["data.dataset=amp", "method.name=lora", "method.rank=0"])


def test_previewed_command_runs_as_shown_and_gives_the_same_config(tmp_path, tiny_models, amp_small):
    """The exact shell text, split by a shell's rules and run: the saved config equals the form's."""
    odd = tmp_path / "a dir with spaces"
    odd.mkdir()
    for f in amp_small.iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    req = forms.TrainingRequest.build([
        f"model.name={tiny_models['esm']}", f"data.dataset={odd}", "method.name=lora", "method.rank=4",
        "data.problem_type=single_label_classification", "training.epochs=1", "training.metrics=accuracy,mcc",
        "head.pooling=attention1d", f"output.dir={tmp_path / 'run'}", "training.learning_rate=0.002"])
    argv = shlex.split(req.command)
    assert argv[:2] == ["plmforge", "train"]
    exe = Path(sys.executable).with_name("plmforge")
    proc = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from plmforge.data.columns import resolve_columns

    # the run saves the columns it found in the file (the form left them to be found)
    assert req.config.data.sequence_column is None
    # ... and what the memory plan settled for LoRA on a CPU: batches of 16 peptides (up to 832 padded tokens)
    # run in parts of at most 512, nothing recomputed
    import dataclasses

    from plmforge.train.memory import CPU_MICRO_BATCH_TOKENS

    c = req.config
    assert (c.model.gradient_checkpointing, c.batching.micro_batch_tokens) == (None, None)
    assert load_run_config(tmp_path / "run") == c.replace(
        data=resolve_columns(c.data)[0], model=dataclasses.replace(c.model, gradient_checkpointing=False),
        batching=dataclasses.replace(c.batching, micro_batch_tokens=CPU_MICRO_BATCH_TOKENS))
    assert req.argv()[-len(req.overrides):] == list(req.overrides) and "sh" not in req.argv()[0]


def test_dataset_picker(tmp_path, amp_small):
    up = tmp_path / "uploads"
    files = [str(amp_small / n) for n in ("train.csv", "validation.csv", "test.csv")]
    split_dir = Path(forms.dataset_override("upload", None, files, None, None, up))
    assert sorted(p.name for p in split_dir.iterdir()) == ["test.csv", "train.csv", "validation.csv"]
    one = Path(forms.dataset_override("upload", None, files[:1], None, None, up))
    assert one.is_file() and one.parent.parent == up
    stray = tmp_path / "extra.csv"
    stray.write_text("aa_seq,label\nMKT,1\n")
    with pytest.raises(ConfigError, match="extra.csv is not named after a split"):
        forms.dataset_override("upload", None, [*files, str(stray)], None, None, up)
    bad = tmp_path / "notes.docx"
    bad.write_text("x")
    with pytest.raises(ConfigError, match="notes.docx is not a dataset file"):
        forms.dataset_override("upload", None, [str(bad)], None, None, up)
    with pytest.raises(ConfigError, match="does not exist"):
        forms.dataset_override("local path", None, None, str(tmp_path / "missing.csv"), None, up)
    assert forms.dataset_override("local path", None, None, str(amp_small), None, up) == str(amp_small.resolve())
    with pytest.raises(ConfigError, match="not a HuggingFace dataset id"):
        forms.dataset_override("hub id", None, None, None, "rm -rf /", up)
    assert forms.dataset_override("catalogue", "amp", None, None, None, up) == "amp"
    assert ("antiberty" in dict((v, k) for k, v in forms.model_choices()))
    assert forms.catalogue_choices()[0][1] == "amp"  # bundled examples first


def test_paths_are_named_as_the_user_knows_them(tmp_path, amp_small, monkeypatch):
    """Inside the folder the UI (or a command) was started in, paths are shown relative to it; an uploaded
    dataset by its files' own names; anything else as it is."""
    from plmforge.outputs import shown_path
    from plmforge.ui.app import App

    project = tmp_path / "my-project"
    (project / "runs" / "amp-first").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert shown_path(project / "runs" / "amp-first") == "runs/amp-first"
    assert shown_path(project) == "."
    assert shown_path(amp_small) == str(amp_small)  # outside: absolute
    app = App(project / "runs", project / ".plmforge-ui")
    files = [str(amp_small / n) for n in ("train.csv", "validation.csv", "test.csv")]
    one = forms.dataset_override("upload", None, files[:1], None, None, app.upload_dir)
    assert app.shown_dataset(one) == "train.csv (uploaded)"
    split_dir = forms.dataset_override("upload", None, files, None, None, app.upload_dir)
    assert app.shown_dataset(split_dir) == "test.csv, train.csv, validation.csv (uploaded)"
    assert app.shown_dataset("amp") == "amp" and app.shown_dataset(str(amp_small)) == str(amp_small)
    (project / "data.csv").write_text("aa_seq,label\nMKT,1\n")
    assert app.shown_dataset(str(project / "data.csv")) == "data.csv"
    (project / "linked").symlink_to(project / "runs")  # as written first: a link inside the folder stays relative
    assert shown_path(project / "linked" / "amp-first") == "linked/amp-first"
    monkeypatch.chdir("/")  # a service's working directory: nothing is shown relative to the root
    assert shown_path(project / "runs") == str(project / "runs")
    assert views.progress_markdown(RunProgress(), "queued", None, queued="position 1").endswith("(not created yet)`")


def test_dataset_views(amp_small):
    from plmforge.data.inspect import check_dataset

    summary = check_dataset([f"data.dataset={amp_small}", "data.problem_type=single_label_classification"])
    text = views.dataset_markdown(summary)
    assert f"**Dataset** `{summary.source}`" in text
    assert "**Dataset** `my.csv (uploaded)`" in views.dataset_markdown(summary, "my.csv (uploaded)")
    assert "**train** 96" in text and "**validation** 32" in text and "**test** 32" in text
    rows = views.dataset_rows(summary)
    assert list(rows["split"].unique()) == ["train", "validation", "test"] and len(rows) == 15
    assert views.label_figure(summary).axes[0].get_title() == "Label distribution"
    assert len(views.length_figure(summary).axes[0].patches) > 0


def test_progress_views_and_runs_list(tmp_path):
    rd = tmp_path / "runs" / "r1"
    rd.mkdir(parents=True)
    (rd / "config.yaml").write_text("model: {name: antiberty}\nmethod: {name: lora}\n")
    log = EventLog(rd / EVENTS_FILE)
    log.emit("start", model="antiberty", method="lora", epochs=1, pid=os.getpid())
    log.emit("model", total=100, trainable=10, trainable_percent=10.0)
    log.emit("plan", steps_per_epoch=[4], total_steps=4)
    for step in (1, 2):
        log.emit("step", epoch=1, step=step, total_steps=4, loss=1.0 / step, lr=1e-3)
    progress = RunProgress.read(rd)
    assert run_status(rd) == "running"
    text = views.progress_markdown(progress, "running", rd)
    assert "50%" in text and "step 2 of 4" in text and "10 trainable (10.00%)" in text
    assert list(views.loss_frame(progress)["loss"]) == [1.0, 0.5]
    log.emit("epoch", epoch=1, train_loss=0.7, validation={"loss": 0.6, "mcc": 0.4}, monitor="mcc", best_epoch=1,
             best_value=0.4)
    log.emit("end", status="aborted")
    log.close()
    rows = list_runs(tmp_path / "runs")
    assert rows[0]["run"] == "r1" and rows[0]["status"] == "aborted" and rows[0]["best"].startswith("mcc 0.4000")
    assert views.metrics_frame(RunProgress.read(rd)).to_dict("records") == [{"epoch": 1, "metric": "mcc",
                                                                             "value": 0.4}]
    # a process that died without an end event
    rd2 = tmp_path / "runs" / "r2"
    rd2.mkdir()
    (rd2 / "config.yaml").write_text("{}")
    EventLog(rd2 / EVENTS_FILE).emit("start", model="m", method="full", epochs=1, pid=2 ** 22 + 12345)
    assert run_status(rd2) == "stopped"


def test_residue_colouring():
    frame = pd.DataFrame({"id": ["a"] * 4, "position": [1, 2, 3, 4], "residue": list("MKTA"),
                          "prediction": [0, 1, 1, 0]})
    html = views.residue_html(frame, ("N", "P"))
    assert html.count("<span title=") == 4 and "P (1)" in html and "N (0)" in html
    values = views.residue_html(frame.assign(prediction=[0.1, 0.5, 0.9, 0.2]))
    assert "from 0.1 (blue) to 0.9 (red)" in values


def test_ui_command_refuses_gradio_missing(monkeypatch):
    import importlib.util

    from plmforge.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["ui"]) == 2


def test_exposed_ui_without_login_is_warned_about():
    from plmforge.ui.app import exposure_warning

    assert exposure_warning("127.0.0.1", False) is None and exposure_warning("0.0.0.0", True) is None
    assert "without --auth" in exposure_warning("0.0.0.0", False)


def test_emptied_options_mean_none_and_strings_survive_yaml(tmp_path):
    fields = {f.key: f for fs in forms.section_fields().values() for f in fs}
    assert forms.format_value(fields["training.patience"], "") == "null"  # no early stopping, not the default 5
    assert forms.format_value(fields["training.max_grad_norm"], None) == "null"
    assert forms.format_value(fields["model.max_length"], "") is None  # default is already "none"
    odd = {"data.label_column": "007", "data.id_column": "yes", "data.sequence_column": "seq #1"}
    overrides = [f"data.dataset={config_to_override_text(str(tmp_path / 'run #3' / 'train.csv'))}",
                 "data.problem_type=regression",
                 *(f"{k}={forms.format_value(fields[k], v)}" for k, v in odd.items()),
                 f"training.patience={forms.format_value(fields['training.patience'], '')}"]
    req = forms.TrainingRequest.build(overrides)
    data = req.config.data
    assert (data.label_column, data.id_column, data.sequence_column) == ("007", "yes", "seq #1")
    assert req.config.training.patience is None
    assert data.dataset == str(tmp_path / "run #3" / "train.csv")
    again = forms.TrainingRequest.build(shlex.split(req.command)[2:])  # the shown command reads back the same
    assert again.config == req.config


def test_the_structure_method_reaches_the_form_through_the_registries():
    """No UI code of its own: ses_adapter and its structure columns come from the method registry."""
    fields = {f.name: f for f in forms.method_fields()["ses_adapter"]}
    cols = fields["structure_columns"]
    assert cols.kind == "multi" and cols.choices == ("foldseek_seq", "ss8_seq", "ss3_seq")
    assert cols.default == ("foldseek_seq", "ss8_seq")
    assert {"attention_heads", "adapter_dropout", "cache_embeddings"} <= set(fields)
    values = {f.key: f.default for fs in forms.section_fields().values() for f in fs}
    values |= {forms.method_key("ses_adapter", f): f.default for f in fields.values()}
    values[forms.method_key("ses_adapter", cols)] = ["foldseek_seq"]
    got = forms.overrides_from_values(values, "ses_adapter")
    assert got == ["method.name=ses_adapter", "method.structure_columns=foldseek_seq"]
    config = forms.TrainingRequest.build([*got, "data.dataset=somewhere"]).config
    assert config.method.options.structure_columns == ("foldseek_seq",)


def test_embedding_phase_progress_is_shown_with_pace_and_eta(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    log = EventLog(rd / EVENTS_FILE)
    log.emit("start", model="m", method="freeze", epochs=2, pid=os.getpid())
    log.emit("phase", phase="embedding")
    log.emit("embed", done=300, total=1200, computed=200, seconds=10.0)
    log.close()
    progress = RunProgress.read(rd)
    rate, left = progress.embed_pace()
    assert rate == pytest.approx(20.0) and left == pytest.approx(45.0)  # 900 left at 20 computed per second
    text = views.progress_markdown(progress, "running", rd, now=progress.started + 12, clock_from=progress.started - 3)
    assert "300 of 1,200 sequences" in text and "20.0 sequences/s" in text and "ETA 0:45" in text
    assert "100 read from the embedding store" in text
    assert "Elapsed:** 0:15" in text  # the clock runs from Start, not from the first event
    assert "width:25.0%" in views.progress_bar_html(progress)
    starting = views.progress_markdown(RunProgress(), "starting", rd, now=100.0, clock_from=40.0)
    assert "loading the model" in starting and "1:00" in starting


def test_results_in_words_and_table():
    blob = {"n_samples": 200, "metrics": {"mcc": 0.5, "auroc": 0.8},
            "intervals": {"mcc": {"low": 0.4, "high": 0.6}, "auroc": {"low": 0.75, "high": 0.85}},
            "baselines": {"composition": {"metrics": {"mcc": 0.3, "auroc": 0.7}}},
            "verdict": {"metric": "mcc", "best_baseline": "composition", "outcome": "better",
                        "difference_interval": {"low": 0.05, "high": 0.35}}}
    table = views.results_table(blob)
    assert list(table.columns) == ["metric", "value", "95% CI low", "95% CI high", "baseline: composition"]
    assert table.set_index("metric").loc["mcc"].tolist() == [0.5, 0.4, 0.6, 0.3]
    text = views.results_sentence(blob)
    assert "200 held-out test proteins" in text and "mcc = 0.500 (95% interval 0.400 to 0.600)" in text
    assert "**better than** it" in text and "+0.050 and +0.350" in text
    tie = {**blob, "verdict": {**blob["verdict"], "outcome": "not distinguishable"}}
    assert "**not distinguishable from** it" in views.results_sentence(tie)
    no_baseline = {"n_samples": 60, "metrics": {"loss": 0.58, "accuracy": 0.7}}  # Evaluate: the first real metric
    assert "accuracy = 0.700" in views.results_sentence(no_baseline)
    assert "No test metrics" in views.results_sentence(None, has_test=False)
    assert views.results_sentence(None) == "" and views.results_table(None).empty


def test_failure_reason_from_the_console_and_plain_errors():
    log = "$ python -m plmforge.cli train ...\nloading\ndata error: train.csv, row 3, column 'label': 'x' is not a " \
          "number\n  fix: use numbers for a regression\n"
    assert views.failure_reason(log) == ("train.csv, row 3, column 'label': 'x' is not a number "
                                         "fix: use numbers for a regression")
    assert views.failure_reason("all fine\n") is None
    assert views.plain_error("ConfigError: pick a model") == "pick a model"


def test_prediction_tables_lead_with_id_and_prediction():
    seq = "M" * 300
    frame = pd.DataFrame({"id": ["p1"], "sequence": [seq], "prediction": [1], "prob_0": [0.1234567],
                          "prob_1": [0.8765433]})
    view = views.prediction_view(frame)
    assert list(view.columns) == ["id", "prediction", "prob_0", "prob_1", "sequence"]
    assert view["sequence"][0].endswith("(300 aa)") and len(view["sequence"][0]) < 40
    assert view["prob_1"][0] == 0.8765
    f32 = frame.astype({"prob_1": "float32"})  # model outputs: shown without float32 noise
    assert str(views.prediction_view(f32)["prob_1"][0]) == "0.8765"
    assert views.whole_rows(frame) == [f"id: p1 | prediction: 1 | prob_0: 0.1235 | prob_1: 0.8765 | sequence: {seq}"]
    card = views.prediction_card(frame)
    assert ">1<" in card and "probability 0.877" in card
    value = views.prediction_card(pd.DataFrame({"id": ["p"], "sequence": ["MK"], "prediction": [0.4321]}))
    assert "0.4321" in value and "predicted value" in value


def test_form_shows_essentials_in_place_and_everything_else_under_advanced():
    advanced = {f.key for fields_ in forms.advanced_fields().values() for f in fields_}
    every = {f.key for fields_ in forms.section_fields().values() for f in fields_}
    placed = set(forms.DATA_ESSENTIALS) | set(forms.TRAIN_ESSENTIALS)
    assert every == advanced | (placed & every) and not advanced & placed  # nothing lost, nothing twice
    assert "data.test_fraction" in every and "training.epochs" not in advanced
    assert forms.field_of("training.epochs").kind == "int"


def test_the_handlers_that_record_who_started_a_run_receive_the_login(tmp_path):
    """With --auth, Start and both Resume buttons are given the request (its username goes into the run's
    start event): gradio passes it only to a parameter it recognises as gr.Request."""
    import warnings

    import gradio as gr
    from gradio.helpers import special_args

    from plmforge.ui.app import build

    demo = build(tmp_path / "runs", tmp_path / "work")
    fns = {bf.name: bf.fn for bf in demo.fns.values()}
    for name in ("do_start", "do_resume", "resume_picked"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # gradio warns, then passes None, when it does not see the parameter
            args, *_ = special_args(fns[name], [None], request=gr.Request(username="ana"))
        assert getattr(args[-1], "username", None) == "ana", name
    selected, *_ = special_args(fns["on_row"], [["row one", "row two"]],
                                event_data=gr.SelectData(None, {"index": [1, 0], "value": "x"}))
    assert fns["on_row"](*selected) == "row two"  # a row clicked in the predictions shows whole


def test_picking_another_label_column_changes_the_task_and_a_hub_entry_resets_it(tmp_path):
    from plmforge.ui import step_data
    from plmforge.ui.app import build

    data = tmp_path / "two.csv"
    rows = [f"MKTAYIAKQRQISFVK{'A' * i},{0.5 * i},{i % 2}" for i in range(30)]
    data.write_text("sequence,target,class\n" + "\n".join(rows) + "\n")
    demo = build(tmp_path / "runs", tmp_path / "work")
    rechoose = {bf.name: bf.fn for bf in demo.fns.values()}["rechoose"]
    regression = rechoose("local path", None, None, str(data), None, "sequence", "target")
    classes = rechoose("local path", None, None, str(data), None, "sequence", "class")
    assert regression[0]["value"] == "regression"
    assert classes[0]["value"] == "single_label_classification" and classes[1]["value"] == "2"
    assert "class" in classes[4] and "2 classes" in classes[4]
    # a catalogue entry read from the hub: its own task and the usual columns, never the previous dataset's
    out = step_data.column_outputs(None, "", "DLKcat")
    assert [u["value"] for u in out[:3]] == ["aa_seq", "label", ""] and out[5]["value"] == "regression"


def test_an_automatic_switch_has_three_states_in_the_form():
    """model.gradient_checkpointing unset means "the memory plan decides": the form offers automatic, on and
    off, and leaving it automatic sends nothing (a checkbox would have sent false)."""
    from plmforge.ui.widgets import field_widget

    field = forms.field_of("model.gradient_checkpointing")
    assert (field.kind, field.optional, field.default) == ("bool", True, None)
    widget = field_widget(field)
    assert type(widget).__name__ == "Dropdown" and widget.value == ""
    assert [c[1] for c in widget.choices] == ["", "true", "false"]
    assert forms.format_value(field, "") is None
    assert (forms.format_value(field, "true"), forms.format_value(field, "false")) == ("true", "false")
    plain = forms.field_of("output.plots")  # an ordinary switch stays a checkbox
    assert type(field_widget(plain)).__name__ == "Checkbox" and forms.format_value(plain, False) == "false"
