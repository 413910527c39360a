"""Pre-defined datasets selectable by a short name: the public benchmarks users of this field pick
from a list (HuggingFace hub, resolved with a network) and the example datasets bundled with plmforge.
Choosing one fills the problem type, number of labels, metrics, monitor, direction and normalisation."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from plmforge.metrics import METRICS

CATALOGUE_FILE = Path(__file__).with_name("catalogue.tsv")
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "data"
METRIC_ALIASES = {"aupr": "auprc", "f1max": "f1_max", "spearman": "spearman_corr"}


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    location: str  # hub id or local directory
    problem_type: str
    num_labels: int
    metrics: tuple[str, ...]  # names this plmforge computes
    unsupported_metrics: tuple[str, ...]  # named by the benchmark, not (yet) computed here
    monitor: str
    direction: str
    label_normalisation: str
    bundled: bool = False


def _metric_names(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = [METRIC_ALIASES.get(m.strip(), m.strip()) for m in text.split(",") if m.strip()]
    return tuple(n for n in names if n in METRICS), tuple(n for n in names if n not in METRICS)


@cache
def catalogue() -> dict[str, CatalogueEntry]:
    entries: dict[str, CatalogueEntry] = {}
    with CATALOGUE_FILE.open() as fh:
        reader = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        for row in reader:
            hub_id = row["hf_dataset"]
            ok, missing = _metric_names(row["metrics"])
            norm = {"None": "none", "": "none"}.get(row["label_normalisation"], row["label_normalisation"])
            monitor = METRIC_ALIASES.get(row["monitor"], row["monitor"])
            entry = CatalogueEntry(hub_id.split("/", 1)[1], hub_id, row["problem_type"], int(row["num_labels"]),
                                   ok, missing, monitor, row["direction"], norm)
            entries[entry.name] = entry
    for entry in bundled_examples():
        entries[entry.name] = entry
    return entries


def bundled_examples() -> list[CatalogueEntry]:
    """Examples shipped in the repository's examples/data (present in a source checkout)."""
    amp = EXAMPLES_DIR / "amp"
    return [CatalogueEntry("amp", str(amp), "single_label_classification", 2,
                           ("accuracy", "precision", "recall", "f1", "mcc", "auroc"), (), "mcc", "max", "none",
                           bundled=True)]


def lookup(name: str) -> CatalogueEntry | None:
    entries = catalogue()
    if name in entries:
        return entries[name]
    for entry in entries.values():  # the full hub id works as well as the short name
        if entry.location == name:
            return entry
    return None
