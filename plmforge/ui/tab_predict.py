"""The Predict tab: one sequence (the prediction in large type; residue tasks colour every residue) or a
batch file (its columns offered as menus; a FASTA's ids come from its headers), with a CSV download.
Sequences that are probably not proteins are warned about and predicted only when the user goes on."""

from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError
from plmforge.ui import forms, views
from plmforge.ui.tab_evaluate import column_menus, file_columns, stamped
from plmforge.ui.views import error_box, ok_box

ROLES = ("sequence", "id")


def build(app: Any) -> tuple[Any, Any]:
    """Returns (tab, run dropdown)."""
    import gradio as gr

    with gr.Tab("Predict", id="predict") as tab:
        run = gr.Dropdown([], label="Finished run", elem_id="pred_run")
        with gr.Row():
            with gr.Column(scale=3):
                sequence = gr.Textbox(label="One sequence (plain or FASTA)", lines=3, elem_id="pred_sequence")
                one = gr.Button("Predict sequence", variant="primary", elem_id="pred_one")
            with gr.Column(scale=2):
                card = gr.HTML(elem_id="pred_card")
        upload = gr.File(label="...or a batch file (CSV, TSV, JSONL, Parquet, FASTA)",
                         file_types=list(forms.DATA_SUFFIXES), elem_id="pred_file")
        with gr.Group(elem_id="pred_columns"):
            menus = column_menus(ROLES, "pred_")
            explain = gr.Markdown(elem_id="pred_columns_md")
        go_on = gr.Checkbox(False, label="These are protein sequences: predict anyway", elem_id="pred_go_on")
        batch = gr.Button("Predict file", elem_id="pred_batch")
        msg = gr.HTML(elem_id="pred_msg")
        residues = gr.HTML(elem_id="pred_residues")
        table = gr.Dataframe(label="Predictions (the CSV keeps whole sequences)", interactive=False,
                             elem_id="pred_table", wrap=False, max_height=420)
        whole = gr.Textbox(label="The row clicked, whole (click a row of the table)", lines=2, interactive=False,
                           elem_id="pred_whole")
        download = gr.DownloadButton("Download predictions (CSV)", visible=False, elem_id="pred_download")
        shown_rows = gr.State(None)  # the rows on screen, unshortened, for the row clicked
    outputs = [msg, card, residues, table, download, shown_rows, whole]

    def on_file(name: str | None, uploaded: str | None):
        return file_columns(app, name, uploaded, ROLES, False)

    for trigger in (upload.change, run.change):
        trigger(on_file, [run, upload], [*menus.values(), explain, msg])

    def predict_with(name: str | None, what: Any, columns: dict[str, str], go: bool):
        from plmforge.api import load_run, predict
        from plmforge.data.columns import nonprotein_warning

        rd = app.run_dir_of(name)
        if rd is None:
            raise ConfigError("pick a finished run")
        if isinstance(what, Path):
            warning = forms.look_at_file(what, columns or None, with_labels=False).warning
        else:
            warning = nonprotein_warning(what)
        if warning and not go:  # refused before any compute
            raise ConfigError(f"{warning}: check the input, or tick 'predict anyway'")
        loaded = app.loaded_run(rd, load_run)
        result = predict(loaded, what, columns=columns)
        out = stamped(app.work_dir / "predictions", rd.name, ".csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        written = result.write(out)
        html = ""
        if loaded.task.problem.per_residue:
            html = views.residue_html(result.table.head(5000), loaded.config.data.residue_classes)
        return result, written[0], html, warning

    def failed(exc: Exception) -> list[Any]:  # a failure also takes away the previous download
        return [error_box(exc), "", "", None, gr.update(visible=False, value=None), None, ""]

    def do_predict_one(name: str | None, text: str, go: bool):
        lines = [ln for ln in (text or "").splitlines() if not ln.lstrip().startswith(">")]  # FASTA header
        seq = "".join("".join(lines).split())
        try:
            if not seq:
                raise ConfigError("type or paste a protein sequence")
            result, path, html, warning = predict_with(name, [seq], {}, go)
        except Exception as exc:  # noqa: BLE001
            return failed(exc)
        note = views.warning_box(warning) if warning else ok_box("predicted")
        return [note, views.prediction_card(result.table), html, views.prediction_view(result.table),
                gr.DownloadButton(value=str(path), visible=True), views.whole_rows(result.table), ""]

    one.click(do_predict_one, [run, sequence, go_on], outputs)

    def do_predict_file(name: str | None, uploaded: str | None, go: bool, *chosen: str):
        try:
            if not uploaded:
                raise ConfigError("upload a file of sequences first")
            columns = {r: c for r, c in zip(ROLES, chosen, strict=True) if c}
            result, path, html, warning = predict_with(name, Path(uploaded), columns, go)
        except Exception as exc:  # noqa: BLE001
            return failed(exc)
        shown = result.frames.get("_sequences", result.table)
        text = f"predicted {len(result.records)} sequences: {Path(path).name}"
        note = views.warning_box(f"{text}; {warning}") if warning else ok_box(text)
        return [note, "", html, views.prediction_view(shown), gr.DownloadButton(value=str(path), visible=True),
                views.whole_rows(shown), ""]

    batch.click(do_predict_file, [run, upload, go_on, *menus.values()], outputs)

    def on_row(rows: list[str] | None, evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return rows[index] if rows and 0 <= index < len(rows) else ""

    table.select(on_row, shown_rows, whole)
    return tab, run
