"""Scores for generated answers, by task:
- descriptions (referring_desc, description): BLEU-2 and BLEU-4 (nltk's corpus BLEU over lower-cased
  whitespace tokens, no smoothing, as protein-text papers report it) and ROUGE-L F1 (Google's rouge-score);
- classes (referring_class): accuracy, macro-F1 and MCC over normalised answers (lower case, outer
  punctuation and spaces removed);
- grounding (grounding_single, grounding_group): per record, residue sets of predicted vs true spans:
  IoU, precision, recall (then averaged), and the fraction whose spans are exactly right.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from plmforge.instruct.data import GROUNDING, Example, format_spans, parse_spans, spans_in_protein

DESCRIPTIVE = ("referring_desc", "description")


def text_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    from nltk.translate.bleu_score import corpus_bleu
    from rouge_score import rouge_scorer

    hyp = [p.lower().split() for p in predictions]
    ref = [[r.lower().split()] for r in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    return {"bleu2": float(corpus_bleu(ref, hyp, weights=(0.5, 0.5))),
            "bleu4": float(corpus_bleu(ref, hyp, weights=(0.25, 0.25, 0.25, 0.25))),
            "rougeL": float(sum(rouge) / len(rouge))}


def normalise_class(text: str) -> str:
    return re.sub(r"^[\W_]+|[\W_]+$", "", text.strip().lower())


def class_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score, matthews_corrcoef

    p = [normalise_class(x) for x in predictions]
    r = [normalise_class(x) for x in references]
    labels = sorted(set(r))  # macro-F1 over the true classes; a predicted class no answer has counts as wrong
    return {"accuracy": sum(a == b for a, b in zip(p, r, strict=True)) / len(r),
            "macro_f1": float(f1_score(r, p, labels=labels, average="macro", zero_division=0)),
            "mcc": float(matthews_corrcoef(r, p))}


def span_scores(predicted: Sequence[list[tuple[int, int]]], true: Sequence[list[tuple[int, int]]]) -> dict[str, float]:
    ious, precisions, recalls, exact = [], [], [], []
    for pred, gold in zip(predicted, true, strict=True):
        p = {i for s, e in pred for i in range(s, e)}
        g = {i for s, e in gold for i in range(s, e)}
        both = len(p & g)
        ious.append(both / len(p | g) if p | g else 1.0)
        precisions.append(both / len(p) if p else 0.0)
        recalls.append(both / len(g) if g else 1.0)
        exact.append(float(sorted(pred) == sorted(gold)))
    n = len(ious)
    return {"span_iou": sum(ious) / n, "span_precision": sum(precisions) / n, "span_recall": sum(recalls) / n,
            "exact_spans": sum(exact) / n}


def score(examples: Sequence[Example], answers: Sequence[str]) -> dict[str, float]:
    """Scores per task present, keys prefixed by the task (e.g. referring_class/accuracy)."""
    out: dict[str, float] = {}
    for task in sorted({e.task for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.task == task]
        preds = [answers[i] for i in idx]
        if task in GROUNDING:
            part = span_scores([parse_spans(p) for p in preds], [examples[i].grd for i in idx])
        elif task == "referring_class":
            part = class_scores(preds, [examples[i].answer for i in idx])
        else:
            part = text_scores(preds, [examples[i].answer for i in idx])
        out |= {f"{task}/{k}": v for k, v in part.items()}
        out[f"{task}/n"] = float(len(idx))
    return out


def write_predictions(examples: Sequence[Example], answers: Sequence[str], path: Path) -> None:
    import pandas as pd

    rows = []
    for e, a in zip(examples, answers, strict=True):
        spans = spans_in_protein(e, a)
        rows.append({"task": e.task, "question": e.messages[-1]["content"], "answer": a, "reference": e.answer,
                     "start": e.start, "spans_in_protein": format_spans(spans) if spans else ""})
    # every text quoted: generated answers may hold line breaks (also a bare \r) and commas
    pd.DataFrame(rows).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
