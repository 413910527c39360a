"""Instruction data: records -> checked, cropped examples -> token ids with prompt-masked labels.

Positions are 0-based and half-open everywhere: [start, end) covers residues start .. end-1 of the
record's `sequence`. Fields (JSON, JSONL or CSV; CSV cells holding lists are JSON):
- sequence; conversation (a list of {role, content} turns, or a plain `question`); answer;
- position_ref: [start, end) of the referenced fragment (referring tasks);
- position_grd: the spans a grounding answer must give, [[s, e], ...] (grounding tasks);
- start: where `sequence` begins in the original protein (0 if absent); task (else data.task).
Sequences longer than model.max_sequence_length are cropped to a window that keeps the referenced
fragment (and the grounding spans) inside; positions are shifted and `start` grows by the offset.
Grounding answers are written by plmforge from position_grd as "[s, e)" spans in the coordinates of
the sequence the model sees; a given answer must name the same spans."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plmforge.errors import DataError

PROTEIN_TOKEN = "<|protein|>"
FRAGMENT_TOKEN = "<|fragment|>"
IGNORE = -100
REFERRING = ("referring_desc", "referring_class")
GROUNDING = ("grounding_single", "grounding_group")
SPAN = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*[\)\]]")


@dataclass
class Example:
    sequence: str  # as the model sees it (cropped)
    messages: list[dict[str, str]]  # the conversation before the answer; the last one is the user's
    answer: str
    task: str
    ref: tuple[int, int] | None  # in the coordinates of `sequence`
    grd: list[tuple[int, int]] = field(default_factory=list)
    start: int = 0  # where `sequence` begins in the original protein
    row: str = ""


def format_spans(spans: list[tuple[int, int]]) -> str:
    return "; ".join(f"[{s}, {e})" for s, e in spans)


def parse_spans(text: str) -> list[tuple[int, int]]:
    """Spans written as "[s, e)" (or "[s, e]"); anything else in the text is ignored."""
    return [(int(a), int(b)) for a, b in SPAN.findall(text) if int(b) > int(a)]


def spans_in_protein(ex: Example, answer: str) -> list[tuple[int, int]]:
    """The spans a grounding answer gives, in the original protein's coordinates (shifted by `start`)."""
    return [(s + ex.start, e + ex.start) for s, e in parse_spans(answer)] if ex.task in GROUNDING else []


def read_records(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", file=str(p))
    name = p.name.lower()
    if name.endswith(".jsonl"):
        records = []
        for lineno, line in enumerate(p.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"line {lineno} is not valid JSON: {exc.msg} (column {exc.colno})",
                                file=str(p), hint="one JSON object per line") from None
            if not isinstance(records[-1], dict):
                raise DataError(f"line {lineno} holds {type(records[-1]).__name__}, not an object with the fields "
                                "sequence, conversation/question, answer, ...", file=str(p)) from None
        return records
    if name.endswith(".json"):
        try:
            blob = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                            file=str(p)) from None
        records = blob if isinstance(blob, list) else blob.get("data", [blob]) if isinstance(blob, dict) else None
        if not isinstance(records, list):
            raise DataError(f"holds a {type(blob).__name__}: expected a list of records (objects) or "
                            "{\"data\": [...]}", file=str(p))
        for i, r in enumerate(records, start=1):
            if not isinstance(r, dict):
                raise DataError(f"record {i} is a {type(r).__name__}, not an object with the fields sequence, "
                                "conversation/question, answer, ...", file=str(p))
        return records
    if name.endswith((".csv", ".tsv")):
        import pandas as pd

        frame = pd.read_csv(p, sep="\t" if name.endswith(".tsv") else ",", keep_default_na=False)
        return frame.to_dict("records")
    raise DataError("unsupported file type", file=str(p), hint="use .json, .jsonl, .csv or .tsv")


def _jsonish(value: Any, what: str, row: str) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{what} is not valid JSON: {value[:60]!r}", file=row, column=what) from None
    if isinstance(value, float) and value != value:
        return None
    return value


def _span(value: Any, length: int, what: str, row: str) -> tuple[int, int]:
    if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise DataError(f"{what} must be [start, end) as two whole numbers, got {value!r}", file=row, column=what)
    s, e = value
    if not 0 <= s < e <= length:
        raise DataError(f"{what} [{s}, {e}) is outside the {length}-residue sequence (positions are 0-based, "
                        "end excluded)", file=row, column=what, hint="0 <= start < end <= length of sequence")
    return s, e


def to_example(rec: dict[str, Any], row: str, default_task: str, max_len: int,
               require_answer: bool = True) -> Example:
    """One checked record. `require_answer=False` (questions to answer): the answer and the grounding
    spans may be missing."""
    from plmforge.instruct.config import TASKS

    seq = str(rec.get("sequence") or "").strip().upper()
    if not seq or not seq.isalpha():
        raise DataError("sequence is missing or holds non-letters", file=row, column="sequence")
    task = str(rec.get("task") or default_task)
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}", file=row, column="task")
    conv = _jsonish(rec.get("conversation"), "conversation", row)
    answer = str(rec.get("answer") or "").strip()
    if conv is None:
        question = str(rec.get("question") or "").strip()
        if not question:
            raise DataError("neither conversation nor question is given", file=row)
        messages = [{"role": "user", "content": question}]
    else:
        if not isinstance(conv, list) or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in conv):
            raise DataError("conversation must be a list of {role, content} turns", file=row, column="conversation")
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in conv]
        if messages and messages[-1]["role"] == "assistant":  # the answer turn
            answer = answer or messages[-1]["content"].strip()
            messages = messages[:-1]
        if not messages or messages[-1]["role"] != "user":
            raise DataError("the conversation must end with a user turn (before the answer)", file=row,
                            column="conversation")
    ref_raw = _jsonish(rec.get("position_ref"), "position_ref", row)
    grd_raw = _jsonish(rec.get("position_grd"), "position_grd", row) or []
    ref = _span(ref_raw, len(seq), "position_ref", row) if ref_raw is not None else None
    grd = [_span(v, len(seq), "position_grd", row) for v in grd_raw]
    start = int(_jsonish(rec.get("start"), "start", row) or 0)
    if task in REFERRING and ref is None:
        raise DataError(f"task {task} needs position_ref", file=row, column="position_ref")
    if task in GROUNDING:
        if not grd and require_answer:
            raise DataError(f"task {task} needs position_grd", file=row, column="position_grd")
        if task == "grounding_single" and len(grd) != 1:
            raise DataError(f"grounding_single takes one span, got {len(grd)}", file=row, column="position_grd")
        if answer and sorted(parse_spans(answer)) != sorted(grd):
            raise DataError(f"the answer names spans {parse_spans(answer)} but position_grd is {grd}", file=row,
                            column="answer", hint="leave answer empty for grounding tasks: plmforge writes it")
    elif not answer and require_answer:
        raise DataError("answer is empty", file=row, column="answer")
    ex = Example(seq, messages, answer, task, ref, grd, start, row)
    ex = crop(ex, max_len)
    if task in GROUNDING and ex.grd:
        ex.answer = format_spans(ex.grd)
    return ex


def crop(ex: Example, max_len: int) -> Example:
    """A window of `max_len` residues that keeps the referenced fragment and the grounding spans."""
    n = len(ex.sequence)
    if n <= max_len:
        return ex
    keep = ([ex.ref] if ex.ref else []) + ex.grd
    lo = min((s for s, _ in keep), default=0)
    hi = max((e for _, e in keep), default=min(n, max_len))
    if hi - lo > max_len:
        raise DataError(f"the referenced spans cover residues {lo}-{hi}, more than model.max_sequence_length="
                        f"{max_len}", file=ex.row, hint="raise model.max_sequence_length or split the record")
    w = max(0, min(lo - (max_len - (hi - lo)) // 2, n - max_len))

    def shift(span: tuple[int, int]) -> tuple[int, int]:
        return span[0] - w, span[1] - w

    return Example(ex.sequence[w:w + max_len], ex.messages, ex.answer, ex.task,
                   shift(ex.ref) if ex.ref else None, [shift(g) for g in ex.grd], ex.start + w, ex.row)


def load_examples(path: str | Path, default_task: str, max_len: int, limit: int | None = None,
                  require_answer: bool = True) -> list[Example]:
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise DataError("the file has no records", file=str(path))
    line = 2 if str(path).lower().endswith((".csv", ".tsv")) else 1
    return [to_example(r, f"{path}, record {i + 1}" + (f" (line {i + line})" if line == 2 else ""), default_task,
                       max_len, require_answer) for i, r in enumerate(records)]


# ---- prompts and token ids ----------------------------------------------------------------------------

def user_messages(ex: Example, latents: int) -> list[dict[str, str]]:
    """The conversation with the protein (one placeholder per residue) before the first user turn and the
    fragment (`latents` placeholders) where the last user turn says <fragment>, else after it."""
    messages = [dict(m) for m in ex.messages]
    first = next(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[first]["content"] = f"Protein: {PROTEIN_TOKEN * len(ex.sequence)}\n{messages[first]['content']}"
    if ex.ref is not None:
        frag = FRAGMENT_TOKEN * latents
        last = messages[-1]["content"]
        messages[-1]["content"] = (last.replace("<fragment>", frag) if "<fragment>" in last
                                   else f"{last}\nFragment: {frag}")
    return messages


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    text = "".join(f"### {m['role'].capitalize()}:\n{m['content']}\n" for m in messages) + "### Assistant:\n"
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Features:
    input_ids: np.ndarray  # prompt + answer + EOS (the answer part only when training)
    labels: np.ndarray | None  # IGNORE over the prompt
    protein_ids: np.ndarray  # the encoder's token ids
    residues: np.ndarray  # bool over protein_ids: residue tokens
    fragment: np.ndarray  # bool over protein_ids: residues of the referenced fragment (all False if none)


def featurize(ex: Example, tokenizer: Any, protein_ids: np.ndarray, special: np.ndarray, latents: int,
              with_answer: bool = True) -> Features:
    prompt = prompt_ids(tokenizer, user_messages(ex, latents))
    residues = ~special
    fragment = np.zeros(len(special), dtype=bool)
    if ex.ref is not None:
        idx = np.flatnonzero(residues)[ex.ref[0]:ex.ref[1]]
        fragment[idx] = True
    if not with_answer:
        return Features(np.asarray(prompt, dtype=np.int64), None, protein_ids, residues, fragment)
    answer = tokenizer(ex.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = np.asarray(prompt + answer, dtype=np.int64)
    labels = np.asarray([IGNORE] * len(prompt) + answer, dtype=np.int64)
    return Features(ids, labels, protein_ids, residues, fragment)


class Collator:
    """Pads a batch: decoder ids on the `side` (right for training, left for generation), labels with
    IGNORE, encoder ids with the encoder's pad id; masks for every part."""

    def __init__(self, pad_id: int, protein_pad_id: int, side: str = "right") -> None:
        self.pad_id, self.protein_pad_id, self.side = pad_id, protein_pad_id, side

    def __call__(self, items: list[Features]) -> dict[str, Any]:
        import torch

        def pad(arrays: list[np.ndarray], value: Any, dtype: Any, side: str) -> torch.Tensor:
            width = max(len(a) for a in arrays)
            out = torch.full((len(arrays), width), value, dtype=dtype)
            for i, a in enumerate(arrays):
                t = torch.as_tensor(a, dtype=dtype)
                if side == "right":
                    out[i, :len(a)] = t
                else:
                    out[i, width - len(a):] = t
            return out

        batch = {"input_ids": pad([f.input_ids for f in items], self.pad_id, torch.long, self.side),
                 "attention_mask": pad([np.ones(len(f.input_ids)) for f in items], 0, torch.long, self.side),
                 "protein_ids": pad([f.protein_ids for f in items], self.protein_pad_id, torch.long, "right"),
                 "protein_mask": pad([np.ones(len(f.protein_ids)) for f in items], 0, torch.long, "right"),
                 "residue_mask": pad([f.residues for f in items], False, torch.bool, "right"),
                 "fragment_mask": pad([f.fragment for f in items], False, torch.bool, "right")}
        if items[0].labels is not None:
            batch["labels"] = pad([f.labels for f in items], IGNORE, torch.long, self.side)
        return batch
