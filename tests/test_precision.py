"""Precision that fits the hardware: the bf16 probe, the refusal of emulated bf16 (train, predict, evaluate,
embed, instruct) with --force-precision to keep it, and the training hint that suggests bf16 only where it
is native. PLMFORGE_ASSUME_NATIVE_BF16 stands in for either kind of CPU; the probe itself is measured
here, and once in a subprocess under an emulated AVX2 CPU."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from plmforge import precision
from plmforge.api import evaluate, load_run, predict
from plmforge.cli import main
from plmforge.config import load_config
from plmforge.embed import EmbedOptions, embed
from plmforge.errors import ConfigError
from plmforge.precision import ASSUME_ENV, FORCE_PRECISION, Verdict, check_precision, native_low_precision
from plmforge.train.loop import Trainer
from plmforge.train.run import check_hardware, train

REPO = Path(__file__).resolve().parents[1]
SEQ = "GLFDIVKKVVGALGSL"
FAST = ["data.problem_type=single_label_classification", "data.num_labels=2", "training.epochs=1",
        "batching.batch_size=16", "training.logging_steps=2", "output.plots=false", "output.bootstrap=0",
        "output.baselines=false"]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Every test measures (or assumes) afresh and sees its own log lines."""
    monkeypatch.delenv(ASSUME_ENV, raising=False)
    precision.reset()
    yield
    precision.reset()


def _config(tmp_path: Path, tiny_models, data: Path, *extra: str, out: str = "run"):
    return load_config(None, [f"data.dataset={data}", f"model.name={tiny_models['esm']}",
                              f"output.dir={tmp_path / out}", *FAST, *extra])


@pytest.fixture(scope="module")
def forced_run(tmp_path_factory, tiny_models, amp_small):
    """A bf16 run trained on a CPU declared without native bf16, kept by training.force_precision; the
    plmforge log lines of that training come along."""
    tmp = tmp_path_factory.mktemp("forced")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("plmforge")
    logger.addHandler(handler)
    precision.reset()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(ASSUME_ENV, "0")
            result = train(_config(tmp, tiny_models, amp_small, "training.mixed_precision=bf16",
                                   "training.force_precision=true"), progress=False)
    finally:
        logger.removeHandler(handler)
        precision.reset()
    return result, records


# ---- the probe ----------------------------------------------------------------------------------------

def test_the_probe_measures_bf16_against_fp32_on_this_cpu_once_and_leaves_no_trace():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    start = time.perf_counter()
    verdict = native_low_precision(torch.bfloat16, "cpu")
    took = time.perf_counter() - start
    assert torch.equal(torch.rand(3), expected)  # the global random stream of a run is untouched
    assert torch.get_num_threads() == threads
    assert took < 1.0
    assert verdict.slowdown is not None and verdict.slowdown > 0
    assert "bf16 matmul" in verdict.reason and "ms vs fp32" in verdict.reason
    assert torch.backends.cpu.get_cpu_capability() in verdict.reason
    assert verdict.native == (verdict.slowdown <= precision.SLOWDOWN_LIMIT)
    assert ("runs natively" in verdict.reason) == verdict.native
    assert native_low_precision(torch.bfloat16, torch.device("cpu")) is verdict  # measured once per process
    print(verdict.reason)  # shown with pytest -s: the numbers of this machine


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="emulates an x86 AVX2 CPU")
def test_an_avx2_only_cpu_measures_bf16_as_emulated_and_training_is_refused():
    """ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA cap torch and oneDNN at AVX2: the flags still name
    avx512_bf16/amx_bf16 here, but the measurement (the final word) finds bf16 emulated."""
    code = ("from plmforge.config import load_config\n"
            "from plmforge.errors import ConfigError\n"
            "from plmforge.train.run import check_hardware\n"
            "try:\n"
            "    check_hardware(load_config(None, ['data.dataset=amp', 'training.mixed_precision=bf16']))\n"
            "except ConfigError as exc:\n"
            "    print('REFUSED', exc)\n"
            "else:\n"
            "    print('ACCEPTED')\n")
    env = {k: v for k, v in os.environ.items() if k != ASSUME_ENV}
    env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("REFUSED"), out.stdout
    assert "bf16 matmul" in out.stdout and "capability AVX2" in out.stdout and "is emulated" in out.stdout
    assert "training.mixed_precision=no" in out.stdout and "--force-precision" in out.stdout


def test_the_environment_variable_decides_without_measuring_and_is_checked(monkeypatch):
    monkeypatch.setenv(ASSUME_ENV, "0")
    no = native_low_precision(torch.bfloat16, "cpu")
    monkeypatch.setenv(ASSUME_ENV, "1")
    yes = native_low_precision(torch.bfloat16, "cpu")
    assert (no.native, yes.native) == (False, True)
    assert ASSUME_ENV in no.reason and no.slowdown is None
    assert precision._measured.cache_info().currsize == 0  # nothing was timed
    monkeypatch.setenv(ASSUME_ENV, "yes")
    with pytest.raises(ConfigError, match=f"{ASSUME_ENV} must be 1 .* or 0"):
        native_low_precision(torch.bfloat16, "cpu")


def test_full_precision_always_passes_and_force_can_come_from_the_context(monkeypatch):
    monkeypatch.setenv(ASSUME_ENV, "0")
    for kind in ("no", "fp32", None):
        assert check_precision(kind, "cpu", False, "x", fix="f", keep="k") is None
    token = FORCE_PRECISION.set(True)  # plmforge train --resume RUN --force-precision
    try:
        assert check_precision("bf16", "cpu", False, "x", fix="f", keep="k") == Verdict(
            False, native_low_precision(torch.bfloat16, "cpu").reason)
    finally:
        FORCE_PRECISION.reset(token)


# ---- training -----------------------------------------------------------------------------------------

def test_training_in_bf16_is_refused_before_anything_is_computed_or_written(tmp_path, tiny_models, amp_small,
                                                                           monkeypatch):
    monkeypatch.setenv(ASSUME_ENV, "0")

    def never(*args, **kwargs):
        raise AssertionError("the model and data were assembled before the precision was checked")

    monkeypatch.setattr("plmforge.train.run.assemble", never)
    config = _config(tmp_path, tiny_models, amp_small, "training.mixed_precision=bf16")
    with pytest.raises(ConfigError) as err:
        train(config, progress=False)
    text = str(err.value)
    assert text.startswith("training.mixed_precision=bf16 would run far slower than float32 here")
    assert "training.mixed_precision=no" in text  # the float32 setting
    assert "--force-precision" in text and "training.force_precision=true" in text
    assert ASSUME_ENV in text  # the reason
    assert not (tmp_path / "run").exists()


def test_the_cli_refuses_bf16_training_in_a_short_message(tmp_path, tiny_models, amp_small, monkeypatch, capsys):
    monkeypatch.setenv(ASSUME_ENV, "0")
    code = main(["train", f"data.dataset={amp_small}", f"model.name={tiny_models['esm']}",
                 f"output.dir={tmp_path / 'run'}", *FAST, "training.mixed_precision=bf16"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "training.mixed_precision=no" in err and "--force-precision" in err
    assert not (tmp_path / "run").exists()


def test_the_force_flag_sets_the_config_key(capsys):
    assert main(["train", "--dataset", "amp", "--force-precision", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "force_precision: true" in out and "training.force_precision=True" in out  # YAML reads True back
    assert load_config(None, ["data.dataset=amp"]).training.force_precision is False
    with pytest.raises(ConfigError, match="training.force_precision must be true or false"):
        load_config(None, ["data.dataset=amp", "training.force_precision=maybe"])


def test_forced_bf16_training_runs_and_warns_with_the_reason(forced_run):
    result, records = forced_run
    assert (result.run_dir / "best").is_dir() and result.test_metrics is not None
    warned = [r.getMessage() for r in records if r.levelno == logging.WARNING and "(forced)" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("training.mixed_precision=bf16 is kept (forced)")
    assert ASSUME_ENV in warned[0]
    assert "force_precision: true" in (result.run_dir / "config.yaml").read_text()


def test_native_bf16_passes_and_says_why_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ASSUME_ENV, "1")
    config = load_config(None, ["data.dataset=amp", "training.mixed_precision=bf16"])
    with caplog.at_level(logging.INFO, logger="plmforge"):
        check_hardware(config)
        check_hardware(config)
    said = [r for r in caplog.records if r.name == "plmforge" and "bfloat16" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert said[0].getMessage().startswith("training.mixed_precision=bf16: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
def test_fp16_without_a_gpu_stays_refused_even_when_forced():
    config = load_config(None, ["data.dataset=amp", "training.mixed_precision=fp16", "training.force_precision=true"])
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        check_hardware(config)


# ---- inference: predict, evaluate, embed ----------------------------------------------------------------

def test_cli_predict_refuses_bf16_before_loading_the_run_and_forced_predicts(forced_run, monkeypatch, capsys):
    monkeypatch.setenv(ASSUME_ENV, "0")
    run_dir = str(forced_run[0].run_dir)
    with monkeypatch.context() as m:
        m.setattr("plmforge.api.load_run", lambda *a, **k: pytest.fail("the run was loaded before the check"))
        assert main(["predict", run_dir, "--sequence", SEQ, "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --precision bf16 would run far slower than float32 here")
    assert "--precision fp32" in err and "--force-precision" in err and ASSUME_ENV in err
    assert main(["predict", run_dir, "--sequence", SEQ, "--precision", "bf16", "--force-precision"]) == 0
    captured = capsys.readouterr()
    assert "prob_1" in captured.out and SEQ in captured.out
    assert "--precision bf16 is kept (forced)" in captured.err
    assert main(["predict", run_dir, "--sequence", SEQ]) == 0  # fp32 needs nothing


def test_cli_evaluate_refuses_bf16_and_writes_nothing(forced_run, amp_small, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ASSUME_ENV, "0")
    run_dir, out = str(forced_run[0].run_dir), tmp_path / "eval"
    assert main(["evaluate", run_dir, "--data", str(amp_small), "--output", str(out), "--precision", "bf16"]) == 2
    assert "--precision fp32" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate", run_dir, "--data", str(amp_small), "--output", str(out), "--precision", "bf16",
                 "--force-precision"]) == 0
    assert (out / "eval_metrics.json").is_file()


def test_python_api_refuses_bf16_unless_forced(forced_run, amp_small, monkeypatch):
    monkeypatch.setenv(ASSUME_ENV, "0")
    run = load_run(forced_run[0].run_dir)
    with pytest.raises(ConfigError, match=r"precision='bf16' would run far slower .* Use precision='fp32'; .* "
                                          r"force_precision=True"):
        predict(run, [SEQ], precision="bf16")
    with pytest.raises(ConfigError, match="force_precision=True"):
        evaluate(run, amp_small, precision="bf16")
    forced = predict(run, [SEQ, "MKTAYIAKQRQISFVK"], precision="bf16", force_precision=True)
    plain = predict(run, [SEQ, "MKTAYIAKQRQISFVK"])
    assert np.allclose(forced.predictions.scores, plain.predictions.scores, atol=0.05)
    assert "accuracy" in evaluate(run, amp_small, precision="bf16", force_precision=True).metrics
    monkeypatch.setenv(ASSUME_ENV, "1")  # a CPU with native bf16: no force needed
    assert predict(run, [SEQ], precision="bf16").predictions.scores.shape == (1, 2)


def test_embed_refuses_bf16_before_loading_the_model_unless_forced(tiny_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ASSUME_ENV, "0")
    model, seqs = str(tiny_models["esm"]), {"a": SEQ, "b": "MKTAYIAKQRQISFVK"}
    with monkeypatch.context() as m:
        m.setattr("plmforge.embed.load_backbone", lambda *a, **k: pytest.fail("the model was loaded before the check"))
        with pytest.raises(ConfigError, match=r"EmbedOptions\(force_precision=True\)"):
            embed(model, seqs, EmbedOptions(precision="bf16", cache_dir=str(tmp_path / "store")))
    got = embed(model, seqs, EmbedOptions(precision="bf16", cache_dir=str(tmp_path / "store"), force_precision=True))
    assert len(got.arrays) == 2 and got.attrs["precision"] == "bf16"
    fasta, out = tmp_path / "seqs.fasta", tmp_path / "emb.h5"
    fasta.write_text(f">a\n{SEQ}\n")
    args = ["embed", "--model", model, "--input", str(fasta), "--out", str(out), "--precision", "bf16",
            "--cache-dir", str(tmp_path / "store")]
    assert main(args) == 2 and not out.exists()
    assert "--force-precision" in capsys.readouterr().err
    assert main([*args, "--force-precision"]) == 0 and out.is_file()


# ---- research: instruct ---------------------------------------------------------------------------------

def test_instruct_bf16_is_refused_unless_forced(monkeypatch):
    from plmforge.instruct.config import (
        InstructConfig,
        InstructDataConfig,
        InstructModelConfig,
        InstructTrainingConfig,
        check_training_precision,
    )
    from plmforge.instruct.run import build

    monkeypatch.setenv(ASSUME_ENV, "0")
    with pytest.raises(ConfigError, match=r"training.bf16=true .* Use training.bf16=false .*training.force_precision"):
        check_training_precision(InstructTrainingConfig(bf16=True))
    check_training_precision(InstructTrainingConfig(bf16=True, force_precision=True))
    config = InstructConfig(InstructModelConfig(decoder="no/such-decoder", dtype="bfloat16"),
                            InstructDataConfig(train="none.jsonl"))
    with pytest.raises(ConfigError, match="model.dtype=bfloat16 would run far slower .* Use model.dtype=float32"):
        build(config)  # refused before the (missing) decoder is looked for


# ---- the training hint ----------------------------------------------------------------------------------

def _hint(monkeypatch, caplog, native: str) -> str:
    monkeypatch.setenv(ASSUME_ENV, native)
    trainer = SimpleNamespace(
        spec=SimpleNamespace(frozen_backbone=False),
        cfg=SimpleNamespace(model=SimpleNamespace(attention="sdpa", attention_dropout=None)),
        asm=SimpleNamespace(backbone=SimpleNamespace(
            family=SimpleNamespace(attention_dropout_key="attention_probs_dropout_prob"),
            model=SimpleNamespace(config=SimpleNamespace(attention_probs_dropout_prob=0.1)))),
        accelerator=SimpleNamespace(device=torch.device("cpu")))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="plmforge"):
        Trainer._speed_hints(trainer)  # type: ignore[arg-type]
    [text] = [r.getMessage() for r in caplog.records if "unfused kernel" in r.getMessage()]
    return text


def test_the_speed_hint_suggests_bf16_only_where_it_is_native(monkeypatch, caplog):
    native, emulated = _hint(monkeypatch, caplog, "1"), _hint(monkeypatch, caplog, "0")
    assert "model.attention_dropout=0" in native and "training.mixed_precision=bf16" in native
    assert "model.attention_dropout=0" in emulated and "training.mixed_precision=bf16" not in emulated
    assert "does not run it natively" in emulated
