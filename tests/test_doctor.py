"""`plmforge doctor`, `plmforge --version` and the example line of every command's --help."""

from __future__ import annotations

import importlib.metadata as md
import shlex

import pytest

from plmforge import doctor
from plmforge.cli import build_parser, main
from plmforge.cli_tools import commands


def test_every_command_help_ends_with_an_example_that_parses():
    parser = build_parser()
    leaves = list(commands(parser))
    assert len(leaves) > 20 and ("doctor",) in [p for p, _ in leaves]
    for path, sub in leaves:
        epilog = sub.epilog or ""
        assert epilog.startswith("example: plmforge " + " ".join(path)), (path, epilog)
        assert "example: plmforge" in sub.format_help()
        words = shlex.split(epilog.removeprefix("example: "))[1:]
        args, extra = parser.parse_known_args(words)  # the flags exist (argparse exits on an unknown choice)
        assert all("=" in e for e in extra), (path, extra)  # only section.key=value overrides are left
        assert callable(args.func)


def test_version_names_plmforge_and_the_libraries_it_depends_on(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"plmforge {md.version('plmforge')}, python ")
    for name in ("torch", "transformers", "peft", "accelerate"):
        assert f"{name} {md.version(name)}" in out


def test_doctor_reports_missing_optional_parts_with_their_fixes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # (the suite runs offline; here the probe answers)
    absent = {"gradio", "deepspeed", "mamba_ssm"}
    rows = doctor.diagnose(tmp_path, reach=lambda: "no route to host",
                           find_module=lambda name: None if name in absent else object(),
                           which=lambda name: None)  # no mkdssp, no chromium
    by_name = {r.name: r for r in rows}
    for name in (*absent, "mkdssp", "chromium"):
        assert by_name[name].status == doctor.MISSING and by_name[name].fix, name
    assert by_name["bitsandbytes"].status == doctor.OK
    assert "plmforge[ui]" in by_name["gradio"].fix and "dssp" in by_name["mkdssp"].fix
    assert by_name["network"].status == doctor.WARN and "no route to host" in by_name["network"].detail
    assert by_name["python"].status == doctor.OK and by_name["torch"].status == doctor.OK
    assert by_name["transformers"].status == doctor.OK and by_name["antiberty"].status == doctor.OK
    cpu = by_name["cpu"]
    import torch

    assert torch.backends.cpu.get_cpu_capability() in cpu.detail and "bfloat16" in cpu.detail
    assert doctor.core_works(rows)  # optional parts missing: the core still works
    text = doctor.render(rows)
    assert "the core works" in text and "5 optional parts missing" in text
    assert "-> pip install 'plmforge[ui]'" in text


def test_doctor_fails_with_the_fix_when_a_required_package_is_missing(monkeypatch, capsys):
    real = md.version

    def version(name: str) -> str:
        if name == "peft":
            raise md.PackageNotFoundError(name)
        if name == "transformers":
            return "4.40.0"  # below plmforge's >=5.0
        return real(name)

    monkeypatch.setattr(doctor.md, "version", version)
    rows = doctor.package_checks()
    by_name = {r.name: r for r in rows}
    assert by_name["peft"].status == doctor.FAIL and by_name["peft"].fix.startswith("pip install 'peft")
    assert by_name["transformers"].status == doctor.FAIL and "needs" in by_name["transformers"].detail
    assert not doctor.core_works(rows)
    assert main(["doctor", "--offline"]) == 1
    out = capsys.readouterr().out
    assert "the core does NOT work here" in out and "-> pip install 'peft" in out


def test_doctor_command_on_this_machine(capsys):
    assert main(["doctor", "--offline"]) == 0
    out = capsys.readouterr().out
    for area in ("system:", "device:", "packages:", "models:", "optional:", "hub:", "store:"):
        assert area in out
    assert "not checked (--offline)" in out and "the core works" in out
    assert out.count("system:") == 1  # every area once


def test_doctor_and_version_run_where_torch_does_not_load():
    """With torch unimportable the full parser cannot be built (its choices import torch); doctor and
    --version still run: doctor names torch as the missing core part, with its fix, and exits 1."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from plmforge.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "doctor", "--offline"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "torch" in run.stdout and "not installed" in run.stdout and "pip install torch==2.13.0" in run.stdout
    assert "the core does NOT work here" in run.stdout
    version = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=300)
    assert version.returncode == 0 and version.stdout.startswith("plmforge "), version.stdout + version.stderr


def test_a_check_that_crashes_is_reported_not_raised(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no such thing")

    monkeypatch.setattr(doctor, "store_checks", broken)
    monkeypatch.setattr(doctor, "package_checks", broken)
    rows = doctor.diagnose(tmp_path, offline=True)
    by_name = {r.name: r for r in rows}
    assert by_name["embedding store"].status == doctor.WARN and "no such thing" in by_name["embedding store"].detail
    assert by_name["packages"].status == doctor.FAIL and not doctor.core_works(rows)
