"""The Mutations tab: which substitutions a pretrained masked language model expects a protein to tolerate,
without training. Paste a sequence, pick a model and a scoring, and get the heatmap, the ranked table and
the CSV (plmforge.mutate.scan; a structure file gives SaProt models their 3Di letters); upload a deep-mutational-scan file to get ProteinGym's metrics with their
intervals and a scatter plot (plmforge.mutate.score). Results are written under the UI's working directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plmforge.errors import ConfigError
from plmforge.ui.tab_evaluate import stamped
from plmforge.ui.views import error_box, ok_box

SCORINGS = [("Masked marginal (best; one pass per site)", "masked_marginal"),
            ("Wild-type marginal (fastest; one pass)", "wt_marginal"),
            ("Pseudo-log-likelihood (slowest; exact for several substitutions)", "pll")]
METRIC_NAMES = {"spearman": "Spearman", "auc": "AUC", "mcc": "MCC", "ndcg": "NDCG (top 10 %)",
                "top_recall": "Top-10 % recall"}


def masked_lm_choices() -> list[str]:
    """Zoo models that have a trained masked-LM head (AntiBERTy first: it works offline), and esm1v."""
    from plmforge.models.families import FAMILIES
    from plmforge.models.zoo import ZOO

    heads = {name for name, family in FAMILIES.items() if family.mlm_class is not None}
    names = [name for name, entry in ZOO.items() if entry.family in heads]
    names.sort(key=lambda n: (n != "antiberty", n))
    return [*names[:1], "esm1v", *names[1:]]


def fresh(directory: Path, name: str, suffix: str = "") -> Path:
    """A new time-stamped path under `directory` (numbered when one was made in the same second)."""
    base = stamped(directory, name)
    path, n = base.with_name(base.name + suffix), 2
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}{suffix}"), n + 1
    return path


def read_pasted(text: str | None) -> str:
    """The sequence from a text box: plain or FASTA (header lines dropped), white space removed."""
    lines = [ln for ln in (text or "").splitlines() if not ln.lstrip().startswith(">")]
    seq = "".join("".join(lines).split()).upper()
    if not seq:
        raise ConfigError("type or paste the wild-type protein sequence")
    return seq


def build(app: Any) -> Any:
    import gradio as gr

    with gr.Tab("Mutations", id="mutations") as tab:
        gr.Markdown("Which single substitutions does a pretrained protein language model expect your protein to "
                    "tolerate? Scores are log-probability ratios from the model's own masked-LM head: above 0 "
                    "the model prefers the mutant to the wild type. No training is needed.")
        with gr.Row():
            with gr.Column(scale=3):
                sequence = gr.Textbox(label="Wild-type sequence (plain or FASTA; may be left empty when a "
                                            "structure is given)", lines=4, elem_id="mut_sequence")
                positions = gr.Textbox(label="Positions to scan (optional, 1-based, e.g. 26-38,55; empty = all)",
                                       elem_id="mut_positions")
                with gr.Row():
                    structure = gr.File(label="Structure (optional; PDB or mmCIF, for SaProt models)",
                                        file_types=[".pdb", ".cif", ".ent", ".mmcif"], elem_id="mut_structure",
                                        height=150)
                    chain = gr.Textbox(label="Chain (when the file has several)", max_lines=1, elem_id="mut_chain")
            with gr.Column(scale=2):
                model = gr.Dropdown(masked_lm_choices(), value="antiberty", allow_custom_value=True,
                                    label="Model (a masked LM; or type a local directory)", elem_id="mut_model",
                                    info="esm1v averages ESM-1v's five models (needs ~13 GB)")
                scoring = gr.Radio(SCORINGS, value="masked_marginal", label="Scoring", elem_id="mut_scoring")
                top = gr.Slider(5, 200, value=30, step=5, label="Rows in the ranked table", elem_id="mut_top")
        scan_button = gr.Button("Scan every substitution", variant="primary", elem_id="mut_scan")
        msg = gr.HTML(elem_id="mut_msg")
        heatmap = gr.Image(label="Heatmap: positions x amino acids (blue = better than the wild type, dots = "
                                 "wild type)", type="filepath", elem_id="mut_heatmap", visible=False, height=640)
        ranked = gr.Dataframe(label="Best substitutions", interactive=False, elem_id="mut_table", max_height=420)
        download = gr.DownloadButton("Download every score (CSV)", visible=False, elem_id="mut_download")
        gr.Markdown("### Measured variants (a deep mutational scan)\nUpload a CSV in ProteinGym's layout "
                    "(`mutant` such as A42G or A42G:K50R, `DMS_score`, optionally `DMS_score_bin` and "
                    "`mutated_sequence`) for the wild type above: every variant is scored and compared with the "
                    "measurements.")
        dms_file = gr.File(label="DMS file (CSV or TSV)", file_types=[".csv", ".tsv"], elem_id="mut_dms_file")
        dms_button = gr.Button("Score the DMS file", elem_id="mut_dms")
        dms_msg = gr.HTML(elem_id="mut_dms_msg")
        with gr.Row():
            dms_metrics = gr.Dataframe(label="Metrics (95 % bootstrap intervals over the variants)",
                                       interactive=False, elem_id="mut_dms_metrics", visible=False)
            scatter = gr.Image(label="Score against measurement", show_label=False, type="filepath",
                               elem_id="mut_scatter", visible=False, height=480)
        dms_download = gr.DownloadButton("Download the variant scores (CSV)", visible=False,
                                         elem_id="mut_dms_download")

    def do_scan(text: str, pdb: str | None, ch: str, pos: str, name: str, how: str, rows: float,
                progress=gr.Progress(track_tqdm=True)):
        return scan_outputs(app, text, pos, name, how, int(rows), pdb, ch)

    def do_dms(text: str, pdb: str | None, ch: str, uploaded: str | None, name: str, how: str,
               progress=gr.Progress(track_tqdm=True)):
        return dms_outputs(app, text, uploaded, name, how, pdb, ch)

    scan_button.click(do_scan, [sequence, structure, chain, positions, model, scoring, top],
                      [msg, heatmap, ranked, download])
    dms_button.click(do_dms, [sequence, structure, chain, dms_file, model, scoring],
                     [dms_msg, dms_metrics, scatter, dms_download])
    return tab


def wild_type(text: str | None, structure: str | None, chain: str | None) -> dict[str, Any]:
    """The wild type and structure arguments of plmforge.mutate.scan/score from the page: the pasted sequence
    (none when only a structure is given: its chain's sequence is the wild type) and the structure file."""
    pasted = "".join((text or "").split())
    return {"sequence": read_pasted(text) if pasted or not structure else None, "structure": structure or None,
            "chain": (chain or "").strip() or None}


def scan_outputs(app: Any, text: str, positions: str, name: str, scoring: str, rows: int,
                 structure: str | None = None, chain: str | None = None) -> list[Any]:
    """A scan's message, heatmap, ranked table and CSV download (or the error, with the old results hidden)."""
    import gradio as gr

    from plmforge.mutate import scan

    try:
        given = wild_type(text, structure, chain)
        lm = app.masked_lm((name or "").strip())
        out = fresh(app.work_dir / "mutations", "scan")
        result = scan(lm, positions=(positions or "").strip() or None, scoring=scoring, out=out, top=rows,
                      progress=True, **given)
    except Exception as exc:  # noqa: BLE001
        return [error_box(exc), gr.update(visible=False, value=None), None, gr.update(visible=False, value=None)]
    shown = result.table.head(rows)[["rank", "mutant", "position", "wt", "mt", "score"]]
    return [ok_box(result.summary), gr.update(visible=True, value=str(out / "heatmap.png")),
            shown.round({"score": 4}), gr.DownloadButton(value=str(out / "scan.csv"), visible=True)]


def dms_outputs(app: Any, text: str, uploaded: str | None, name: str, scoring: str, structure: str | None = None,
                chain: str | None = None) -> list[Any]:
    """A DMS file's message, metrics table, scatter plot and scores download (or the error)."""
    import gradio as gr

    from plmforge.mutate import score

    hidden = gr.update(visible=False, value=None)
    try:
        given = wild_type(text, structure, chain)
        if not uploaded:
            raise ConfigError("upload a DMS file first")
        lm = app.masked_lm((name or "").strip())
        out = fresh(app.work_dir / "mutations", "dms_scores", ".csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = score(lm, uploaded, scoring=scoring, out=out, progress=True, **given)
    except Exception as exc:  # noqa: BLE001
        return [error_box(exc), hidden, hidden, hidden]
    if result.report is None:
        return [ok_box(result.summary + " (no DMS_score column: no metrics)"), hidden, hidden,
                gr.DownloadButton(value=str(out), visible=True)]
    return [ok_box(result.summary), gr.update(visible=True, value=metrics_frame(result.report)),
            gr.update(visible=True, value=str(out.with_name(out.stem + "_scatter.png"))),
            gr.DownloadButton(value=str(out), visible=True)]


def metrics_frame(report: dict[str, Any]) -> Any:
    """ProteinGym's metrics of a DMS file as rows: value and its 95 % interval."""
    import pandas as pd

    rows = []
    for key, value in report["metrics"].items():
        ci = (report.get("intervals") or {}).get(key) or {}
        rows.append({"metric": METRIC_NAMES.get(key, key), "value": round(value, 4),
                     "95% CI low": None if ci.get("low") is None else round(ci["low"], 4),
                     "95% CI high": None if ci.get("high") is None else round(ci["high"], 4)})
    return pd.DataFrame(rows + [{"metric": "variants", "value": report["n_variants"]}])
