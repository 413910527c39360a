"""Zero-shot mutation effects from masked language models: saturation scans, variant scores and the metrics
of deep mutational scans (plmforge.mutate.scan / score; `plmforge mutate scan|score`)."""

from plmforge.mutate.api import ScanResult, ScoreResult, scan, score

__all__ = ["ScanResult", "ScoreResult", "scan", "score"]
