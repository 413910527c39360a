"""The command line says what it accepts (choices and help from the registries), the data check
returns a summary object, and a frozen-backbone run imports no optional heavy dependency."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plmforge.cli import main
from plmforge.heads import HEADS
from plmforge.methods import METHODS
from plmforge.tasks import PROBLEM_TYPES


def test_train_help_lists_choices_from_the_registries(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for registry in (METHODS, HEADS, PROBLEM_TYPES):
        assert "one of " + ", ".join(registry) in out
    with pytest.raises(SystemExit) as bad:
        main(["train", "--method", "lora2"])
    assert bad.value.code == 2
    assert "invalid choice: 'lora2'" in capsys.readouterr().err


def test_methods_command_shows_each_method_with_its_options(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(METHODS)
    for name, spec in METHODS.items():
        assert spec.description in lines[name]
        assert all(f"{option}=" in lines[name] for option in spec.option_names)
    assert "adalora_init_rank=12" in lines["adalora"] and "cache_embeddings=True" in lines["freeze"]


def test_data_check_returns_a_summary_object(amp_dir):
    from plmforge.data.inspect import check_dataset

    summary = check_dataset([f"data.dataset={amp_dir}"])
    assert {k: s.size for k, s in summary.splits.items()} == {"train": 3712, "validation": 465, "test": 465}
    train = summary.splits["train"]
    assert sum(train.labels.counts.values()) == 3712 and set(train.labels.counts) == {0, 1}
    assert train.lengths.min() >= 1 and len(train.lengths) == 3712
    assert not summary.validation_carved and summary.task.monitor == "mcc"  # from the catalogue
    assert "OK: every row is valid" in summary.render()


def test_residue_data_check_counts_masked_residues(tmp_path):
    from plmforge.data.inspect import check_dataset

    (tmp_path / "train.csv").write_text("aa_seq,label,mask\n" + "MKTAY,NNPPN,11011\n" * 6)
    summary = check_dataset([f"data.train={tmp_path / 'train.csv'}", "data.problem_type=residue_single_label_classification",
                             "data.residue_classes=N,P", "data.mask_column=mask"])
    labels = summary.splits["train"].labels
    # 5 of the 6 rows stay in train; each has N,N,P,P,N with its first P masked
    assert labels.masked == 5 and labels.counts == {0: 15, 1: 5} and labels.units == 20


def test_a_frozen_backbone_run_imports_neither_peft_nor_bitsandbytes(tmp_path, tiny_models, amp_small):
    code = (
        "import sys\n"
        "from plmforge.cli import main\n"
        f"rc = main(['train', 'data.dataset={amp_small}', 'model.name={tiny_models['esm']}', 'training.epochs=1',"
        f" 'data.problem_type=single_label_classification', 'output.dir={tmp_path / 'run'}'])\n"
        "print('heavy:', sorted(m for m in ('peft', 'bitsandbytes', 'wandb', 'tensorboard') if m in sys.modules))\n"
        "sys.exit(rc)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "heavy: []" in proc.stdout
    assert "gemm_4bit" not in proc.stderr and "kernels-community" not in proc.stderr

