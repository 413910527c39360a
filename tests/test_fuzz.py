"""Property-based fuzzing of the readers and label parsers: whatever the bytes, the only outcomes are a
valid dataset or a plmforge error (DataError / ConfigError) that names the problem; never a traceback
from deeper down. Bounded (a fixed number of examples, no deadline) so it runs in CI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plmforge.config import DataConfig
from plmforge.data.readers import read_file
from plmforge.data.validate import table_to_records
from plmforge.errors import PlmforgeError
from plmforge.tasks import PROBLEM_TYPES

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)  # the same examples every run: a CI failure can be replayed
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".fasta", ".parquet", ".csv.gz", ".zip"]
PROBLEMS = list(PROBLEM_TYPES)


def _read_and_validate(path: Path, problem: str) -> None:
    """Read and validate as training does; only plmforge errors may escape."""
    try:
        table = read_file(path)
        cfg = DataConfig(dataset=str(path), problem_type=problem,
                         residue_classes=("A", "B") if problem.startswith("residue_single") else None)
        table_to_records(table, cfg, problem)
    except PlmforgeError as exc:
        assert str(exc)  # a message, naming something
    except Exception as exc:  # noqa: BLE001 - the property under test
        pytest.fail(f"{path.name}: {type(exc).__name__}: {exc}")


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES), problem=st.sampled_from(PROBLEMS))
def test_random_bytes(data, suffix, problem):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(data)
        _read_and_validate(path, problem)


CELL = st.one_of(st.text(alphabet=list("ACDEKMWYacdxJ01 .-,;\"'\t[]\n\r\\é"), max_size=12),
                st.sampled_from(["", "nan", "inf", "-1", "1e9", "1000000000000", "0,1", "[0, 2]", "AB", "1.5"]))


@FUZZ
@given(header=st.lists(st.sampled_from(["aa_seq", "label", "id", "mask", "", "aa_seq", "x y"]), min_size=0,
                       max_size=4),
       rows=st.lists(st.lists(CELL, max_size=5), max_size=8), sep=st.sampled_from([",", "\t", ";"]),
       suffix=st.sampled_from([".csv", ".tsv"]), problem=st.sampled_from(PROBLEMS))
def test_random_delimited_tables(header, rows, sep, suffix, problem):
    text = sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"t{suffix}"
        path.write_text(text)
        _read_and_validate(path, problem)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=6)


@FUZZ
@given(records=st.lists(st.one_of(st.fixed_dictionaries({"aa_seq": JSON_VALUE, "label": JSON_VALUE}), JSON_VALUE),
                        max_size=6), problem=st.sampled_from(PROBLEMS))
def test_random_json_lines(records, problem):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        _read_and_validate(path, problem)


@FUZZ
@given(records=st.lists(st.tuples(st.text(alphabet="p1 =label>", max_size=10), CELL), max_size=6),
       problem=st.sampled_from(PROBLEMS))
def test_random_fasta(records, problem):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.fasta"
        path.write_text("".join(f">{h}\n{s}\n" for h, s in records))
        _read_and_validate(path, problem)


@FUZZ
@given(labels=st.lists(CELL, min_size=1, max_size=6), problem=st.sampled_from(PROBLEMS))
def test_random_label_strings(labels, problem):
    """Valid sequences with random label strings, through every problem type's parser."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "l.csv"
        seqs = ["MKTAYIAKQR"[: 3 + i] for i in range(len(labels))]
        import csv

        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["aa_seq", "label"])
            w.writerows(zip(seqs, labels, strict=True))
        _read_and_validate(path, problem)
