"""plmforge deletes only what it made (issue 25, finding 1): --overwrite and its equivalents replace a
directory only when it is a plmforge output of that kind with nothing foreign in it; the home directory,
the root, the current directory and any directory holding the inputs are refused whatever the flags, and
before any compute."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plmforge import owned
from plmforge.cli import main
from plmforge.errors import RunDirError

BASE = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=1",
        "batching.batch_size=16"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its content hash (and every directory)."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _train(tmp_path, tiny_models, amp_small, out: Path, *extra: str) -> int:
    return main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", f"output.dir={out}",
                 *BASE, *extra])


def test_a_directory_of_user_files_is_never_replaced(tmp_path, tiny_models, amp_small, capsys):
    d = tmp_path / "mine"
    (d / "Documents").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes")
    (d / "Documents" / "thesis.tex").write_text("\\section{Results}")
    before = snapshot(d)
    for flags in ([], ["--overwrite"], ["--overwrite", "--dry-run"]):
        assert _train(tmp_path, tiny_models, amp_small, d, *flags) == 2
        err = capsys.readouterr().err
        assert "notes.txt" in err and "Documents/" in err and "--overwrite" not in err, err
    assert snapshot(d) == before


def test_the_dataset_directory_and_the_home_and_root_are_refused_outright(tmp_path, tiny_models, amp_small, capsys,
                                                                           monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for f in amp_small.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    before = snapshot(data)
    assert main(["train", f"data.dataset={data}", f"model.name={tiny_models['esm']}", f"output.dir={data}",
                 "--overwrite", *BASE]) == 2
    assert "holds an input of this command" in capsys.readouterr().err
    # the directory above the data file as well, and even when it looks like a run
    (data / "config.yaml").write_text("{}")
    (data / "model_stats.json").write_text("{}")
    assert main(["train", f"data.train={data / 'train.csv'}", f"model.name={tiny_models['esm']}",
                 f"output.dir={data}", "--overwrite", *BASE]) == 2
    assert "holds an input" in capsys.readouterr().err
    (data / "config.yaml").unlink()
    (data / "model_stats.json").unlink()
    assert snapshot(data) == before
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(RunDirError, match="your home directory") as err:
        owned.check_output_dir(home, "run", overwrite=True)
    assert "--overwrite" not in str(err.value)
    with pytest.raises(RunDirError, match="root of the file system"):
        owned.check_output_dir(Path("/"), "run", overwrite=True)
    monkeypatch.chdir(data)
    with pytest.raises(RunDirError, match="holds the current directory"):
        owned.check_output_dir(tmp_path, "run", overwrite=True)


def test_a_run_is_replaced_only_when_nothing_foreign_is_in_it(tmp_path, tiny_models, amp_small, capsys):
    run = tmp_path / "run"
    assert _train(tmp_path, tiny_models, amp_small, run) == 0
    assert (run / owned.MARKER).is_file()
    assert _train(tmp_path, tiny_models, amp_small, run) == 2  # exists: the flag is named
    assert "already holds a plmforge training run" in capsys.readouterr().err
    (run / "my_analysis.ipynb").write_text("{}")
    before = snapshot(run)
    assert _train(tmp_path, tiny_models, amp_small, run, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "my_analysis.ipynb" in err and "did not write" in err
    assert snapshot(run) == before
    (run / "my_analysis.ipynb").unlink()
    assert _train(tmp_path, tiny_models, amp_small, run, "--overwrite") == 0  # its own run: replaced
    assert (run / owned.MARKER).is_file() and not (run / "my_analysis.ipynb").exists()


def test_other_kinds_are_not_replaced_as_runs(tmp_path):
    sweep = tmp_path / "sweep"
    owned.mark(sweep, "sweep")
    (sweep / "sweep.json").write_text("{}")
    with pytest.raises(RunDirError, match="is a plmforge sweep, not a plmforge training run"):
        owned.check_output_dir(sweep, "run", overwrite=True)
    owned.check_output_dir(sweep, "sweep", overwrite=True)  # its own kind: allowed
    owned.replace_dir(sweep, "sweep")
    assert [p.name for p in sweep.iterdir()] == [owned.MARKER]
    stopped = tmp_path / "stopped"  # killed while writing its marker: only the temporary file is there
    stopped.mkdir()
    (stopped / (owned.MARKER + ".tmp")).write_text('{"ki')
    owned.check_output_dir(stopped, "run", overwrite=True)
    for kind, how in (("instruct", "set training.overwrite_output_dir=true"),
                      ("ptm", "set training.overwrite_output_dir=true")):
        d = tmp_path / kind
        owned.mark(d, kind)
        (d / "config.yaml").write_text("{}")
        with pytest.raises(RunDirError, match=f"{how} to replace it"):
            owned.check_output_dir(d, kind, overwrite=False, how=how)


def test_instruct_and_ptm_refuse_a_directory_of_user_files(tmp_path):
    from plmforge.instruct.config import instruct_config_from_dict
    from plmforge.instruct.run import train_instruct
    from plmforge.ptm.train import load_ptm_config, train_ptm

    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep")
    before = snapshot(d)
    with pytest.raises(RunDirError, match="notes.txt"):
        train_instruct(instruct_config_from_dict({"model": {"decoder": str(tmp_path / "llama")},
                                                  "data": {"train": str(tmp_path / "x.jsonl")},
                                                  "training": {"output_dir": str(d), "overwrite_output_dir": True}}))
    with pytest.raises(RunDirError, match="notes.txt"):
        train_ptm(load_ptm_config(None, [f"dataset.dataset_location={tmp_path / 'x.csv'}",
                                         f"training.output_dir={d}", "training.overwrite_output_dir=true"]))
    assert snapshot(d) == before


NAMES = st.sampled_from(["notes.txt", "data.csv", "config.yaml", "best", "plots", "test_metrics.csv", "fold_1",
                         "trial_000", "Documents", ".hidden", "train.log", owned.MARKER, "README.md", "x.bin"])


@st.composite
def user_trees(draw):
    """A directory tree with at least one file a user made, maybe next to plmforge-looking names."""
    entries = draw(st.lists(st.tuples(NAMES, st.booleans(), st.binary(max_size=20)), min_size=0, max_size=6))
    user = draw(st.sampled_from(["notes.txt", "thesis.tex", "Documents/paper.docx", "results/figure.png"]))
    return entries, user


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=user_trees(), command=st.sampled_from(["train", "cv", "sweep", "export"]),
       flags=st.sampled_from([[], ["--overwrite"], ["--overwrite", "--dry-run"]]))
def test_no_command_deletes_or_changes_a_user_file(tmp_path_factory, tiny_models, amp_small, tree, command, flags,
                                                   capsys):
    root = tmp_path_factory.mktemp("tree")
    d = root / "out"
    d.mkdir()
    entries, user = tree
    (d / user).parent.mkdir(parents=True, exist_ok=True)
    (d / user).write_text("the user's own work")
    for name, is_dir, content in entries:
        p = d / name
        if p.exists():
            continue
        if is_dir and name != owned.MARKER:
            p.mkdir()
            (p / "inner.dat").write_bytes(content)
        else:
            p.write_bytes(content)
    before = snapshot(d)
    common = [f"model.name={tiny_models['esm']}", *BASE]
    argv = {"train": ["train", f"data.dataset={amp_small}", f"output.dir={d}", *common, *flags],
            "cv": ["train", f"data.dataset={amp_small}", f"output.dir={d}", "cv.folds=2", *common, *flags],
            "sweep": ["sweep", f"data.dataset={amp_small}", *common, "--space", str(root / "space.yaml"),
                      "--out", str(d), "--trials", "1", *[f for f in flags if f != "--dry-run"]],
            "export": ["export", str(root / "no-run"), "--merge", str(d),
                       *[f for f in flags if f != "--dry-run"]]}[command]
    (root / "space.yaml").write_text("training.learning_rate: [0.001]\n")
    assert main(argv) != 0
    capsys.readouterr()
    assert snapshot(d) == before


# ---- finding 2: outputs never replace inputs; existing outputs only with --overwrite; checked first ----

@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tiny_models, amp_small):
    out = tmp_path_factory.mktemp("owned") / "run"
    assert main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}", f"output.dir={out}",
                 *BASE]) == 0
    return out


def test_predict_never_replaces_its_input_and_needs_overwrite_for_an_existing_file(small_run, tmp_path, capsys):
    data = tmp_path / "mine.csv"
    data.write_text("aa_seq,assay_notes\nMKTAYIAKQRQISFVK,kept\nGLFDIVKKVVGALGSL,also kept\n")
    before = data.read_bytes()
    assert main(["predict", str(small_run), "--input", str(data), "--output", str(data), "--overwrite"]) == 2
    assert "is an input of this command" in capsys.readouterr().err and data.read_bytes() == before
    out = tmp_path / "pred.csv"
    assert main(["predict", str(small_run), "--input", str(data), "--output", str(out)]) == 0
    first = out.read_bytes()
    out.write_text("an earlier result the user keeps\n")
    assert main(["predict", str(small_run), "--input", str(data), "--output", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_text() == "an earlier result the user keeps\n"
    assert main(["predict", str(small_run), "--input", str(data), "--output", str(out), "--overwrite"]) == 0
    assert out.read_bytes() == first
    for bad, words in ((tmp_path / "missing" / "p.csv", "does not exist"), (tmp_path, "is a directory")):
        assert main(["predict", str(small_run), "--input", str(data), "--output", str(bad)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert not list(tmp_path.glob(".*.partial"))


def test_evaluate_embed_and_structure_check_their_outputs_first(small_run, tmp_path, amp_small, tiny_models, capsys):
    test = amp_small / "test.csv"
    out = tmp_path / "ev"
    assert main(["evaluate", str(small_run), "--data", str(test), "--output", str(out)]) == 0
    assert main(["evaluate", str(small_run), "--data", str(test), "--output", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["evaluate", str(small_run), "--data", str(test), "--output", str(out), "--overwrite"]) == 0
    (out / "my_notes.txt").write_text("x")  # a user's file in it: never written over, whatever the flags
    assert main(["evaluate", str(small_run), "--data", str(test), "--output", str(out), "--overwrite"]) == 2
    assert "my_notes.txt" in capsys.readouterr().err
    assert main(["evaluate", str(small_run), "--data", str(test), "--output", str(amp_small), "--overwrite"]) == 2
    assert "holds an input" in capsys.readouterr().err
    fasta = tmp_path / "s.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    for argv, words in ((["embed", "--model", str(tiny_models["esm"]), "--input", str(fasta), "--out",
                          str(tmp_path / "nowhere" / "e.h5")], "does not exist"),
                        (["embed", "--model", str(tiny_models["esm"]), "--input", str(fasta), "--out", str(fasta),
                          "--overwrite"], "is an input"),
                        (["structure", str(fasta), "--out", str(fasta), "--overwrite"], "is an input")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    assert fasta.read_text() == ">a\nMKTAYIAKQR\n"


# ---- finding 3: a run directory is what it is: --resume DIR continues in DIR ----

def test_resuming_a_copied_or_moved_run_writes_only_there(tmp_path, tiny_models, amp_small):
    import shutil

    from conftest import StopTraining, stop_after_epoch

    from plmforge.config import load_config
    from plmforge.train.run import train

    original = tmp_path / "original"
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                             f"output.dir={original}", *BASE[:2], "training.epochs=2", "batching.batch_size=16"])
    with pytest.raises(StopTraining):
        train(cfg, callbacks=[stop_after_epoch(0)], progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = snapshot(original)
    assert main(["train", "--resume", str(copy)]) == 0
    assert snapshot(original) == before  # the original was not touched
    assert (copy / "test_metrics.json").is_file() and str(copy) in (copy / "train.log").read_text()
    moved = tmp_path / "moved"
    original.rename(moved)
    assert main(["train", "--resume", str(moved)]) == 0
    assert (moved / "test_metrics.json").is_file() and not original.exists()


# ---- finding 4: every load of weights is verified; no record, no use (unless trusted, loudly) ----

def test_weights_without_their_checksum_record_are_refused_unless_trusted(small_run, tmp_path, capsys, caplog,
                                                                         amp_small):
    import shutil

    from plmforge.api import load_run

    run = tmp_path / "copied"
    shutil.copytree(small_run, run)
    (run / "best" / "checksums.json").unlink()
    weights = run / "best" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):  # flipped bytes in the middle of the tensors
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["predict", str(run), "--sequence", "GLFDIVKKVVGALGSL"]) == 2
    err = capsys.readouterr().err
    assert "no checksum record" in err and "--trust-unverified" in err and "Traceback" not in err
    assert main(["evaluate", str(run), "--data", str(amp_small), "--output", str(tmp_path / "ev")]) != 0
    assert not (tmp_path / "ev").exists()
    with pytest.raises(RunDirError, match="no checksum record"):
        load_run(run)
    shutil.copy(small_run / "best" / "model.safetensors", weights)  # intact weights, still no record
    with caplog.at_level("WARNING", logger="plmforge"):
        assert main(["predict", str(run), "--sequence", "GLFDIVKKVVGALGSL", "--trust-unverified"]) == 0
    assert "UNVERIFIED" in caplog.text
    load_run(run, trust_unverified=True)


def test_an_export_is_sealed_and_verified_like_a_run(small_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(small_run), "--merge", str(out)]) == 0
    assert (out / "best" / "checksums.json").is_file() and (out / "backbone" / "checksums.json").is_file()
    assert main(["predict", str(out), "--sequence", "GLFDIVKKVVGALGSL"]) == 0
    capsys.readouterr()
    weights = next((out / "backbone").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["predict", str(out), "--sequence", "GLFDIVKKVVGALGSL"]) == 2
    assert "does not match the checksum" in capsys.readouterr().err


# ---- finding 8 and the smaller ones: a clear message naming the place and the fix, never a traceback ----

def test_damaged_run_files_and_bad_options_give_messages_not_tracebacks(small_run, tmp_path, capsys, amp_small):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "config.yaml").write_text("just some text the user pasted\n")
    assert main(["predict", str(run), "--sequence", "GLFDIVKKVVGALGSL"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml" in err and "mapping" in err and "Traceback" not in err
    shutil.copy(small_run / "config.yaml", run / "config.yaml")
    task = json.loads((run / "task.json").read_text())
    task["task"]["num_labels"] = 5
    (run / "task.json").write_text(json.dumps(task))
    assert main(["predict", str(run), "--sequence", "GLFDIVKKVVGALGSL"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "task.json" in err and "Traceback" not in err
    twice = tmp_path / "twice.yaml"
    twice.write_text("training:\n  epochs: 3\n  epochs: 30\n")
    assert main(["train", "--config", str(twice), f"data.dataset={amp_small}", "--dry-run"]) == 2
    assert "'epochs' is given twice (lines 2 and 3)" in capsys.readouterr().err
    assert main(["train", f"data.dataset={amp_small}", "output.dir=~", "--dry-run"]) == 2
    assert "~ or null alone mean 'nothing'" in capsys.readouterr().err


def test_bad_research_inputs_and_ui_options_are_named(tmp_path, capsys):
    from plmforge.errors import ConfigError, DataError
    from plmforge.instruct.data import read_records
    from plmforge.ptm.train import load_ptm_config
    from plmforge.ui.app import check_host, launch

    (tmp_path / "list.json").write_text("[[1, 2], [3]]")
    with pytest.raises(DataError, match="record 1 is a list"):
        read_records(tmp_path / "list.json")
    (tmp_path / "broken.jsonl").write_text('{"sequence": "MK"}\n\n{"sequence": \n')
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_records(tmp_path / "broken.jsonl")
    with pytest.raises(ConfigError, match="'J', not one of the 20 amino-acid letters"):
        load_ptm_config(None, ["dataset.dataset_location=x.csv", 'model.ptm_tokens=["Foo:J"]'])
    with pytest.raises(ConfigError, match="not an address or a known host name"):
        check_host("no-such-host.invalid")
    with pytest.raises(ConfigError, match="user name and a password"):
        launch(auth=":", runs_dir=tmp_path / "r", work_dir=tmp_path / "w", block=False)
    assert main(["instruct", "generate", str(tmp_path / "none"), "--sequence", "MKT*-LV", "--question", "what?"]) == 2
    assert "'*', '-'" in capsys.readouterr().err


def test_evaluating_one_class_says_which_metrics_are_undefined(small_run, tmp_path, amp_small, capsys, caplog):
    import warnings

    import pandas as pd

    one = pd.read_csv(amp_small / "test.csv")
    one = one[one["label"] == 1]
    one.to_csv(tmp_path / "positives.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning reaches the user
        assert main(["evaluate", str(small_run), "--data", str(tmp_path / "positives.csv"), "--output",
                     str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "auroc" in out and "n/a (undefined on these labels)" in out and "nan" not in out
    assert "one class only (1)" in caplog.text
