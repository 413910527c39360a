"""The documentation site: the generated reference pages are current, and `mkdocs build --strict` passes
(a broken link, a page missing from the navigation or a stale API reference fails)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO

DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_are_current():
    gen = _generator()
    for name, make in gen.PAGES.items():
        committed = (DOCS / name).read_text()
        assert committed == make() + "\n", f"docs/{name} is stale: run .venv/bin/python docs/gen_reference.py"


def test_cli_reference_lists_every_command_and_config_reference_every_key():
    from plmforge.config import _SECTION_TYPES

    from plmforge.cli import build_parser
    from plmforge.cli_tools import commands

    cli = (DOCS / "reference" / "cli.md").read_text()
    for path, _ in commands(build_parser()):
        assert f"## plmforge {' '.join(path)}\n" in cli
    config = (DOCS / "reference" / "config.md").read_text()
    import dataclasses

    for section, cls in _SECTION_TYPES.items():
        if section != "method":
            for f in dataclasses.fields(cls):
                assert f"| `{section}.{f.name}` |" in config, f"{section}.{f.name}"
    assert "| `training.learning_rate` | `float` |" in config and "one of `linear`, `cosine`" in config


def test_site_builds_strictly(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/install/index.html", "reference/cli/index.html",
                 "reference/config/index.html", "reference/api/index.html", "troubleshooting/index.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "load_config" in api and "cross_validate" in api and "Score every single substitution" in api


def test_tutorial_notebooks_run_from_start_to_end(tmp_path):
    """Every notebook under docs/tutorials executes without an error (outputs are stripped in git)."""
    import nbformat
    from nbclient import NotebookClient

    notebooks = sorted((DOCS / "tutorials").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
            f"{path.name}: commit it with its outputs stripped"
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        text = "".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
        if path.name == "python-api.ipynb":
            assert "mcc" in text and "magainin-2" in text and "composition" in text


def test_the_extending_guide_example_method_registers_and_trains(tiny_models, tmp_path):
    """The BitFit method of docs/how-to/extending.md, run as written: registered, its option checked, and a
    training run with it trains the backbone's biases (and only those) with the head."""
    import re

    from plmforge.config import load_config
    from plmforge.errors import ConfigError
    from plmforge.methods import METHODS
    from plmforge.train.run import train

    text = (DOCS / "how-to" / "extending.md").read_text()
    code = re.search(r"## A fine-tuning method.*?```python\n(.*?)```", text, re.S).group(1)
    assert "bitfit" not in METHODS
    exec(compile(code, "extending.md", "exec"), {})
    try:
        assert "bitfit" in METHODS
        base = [f"model.name={tiny_models['esm']}", "data.dataset=amp", "data.max_samples=48", "training.epochs=1",
                f"output.dir={tmp_path / 'run'}", "method.name=bitfit"]
        with pytest.raises(ConfigError, match="rank"):
            load_config(None, base + ["method.rank=4"])
        result = train(load_config(None, base + ["method.train_layer_norms=true"]))
        assert result.test_metrics is not None
        stats = json.loads((result.run_dir / "model_stats.json").read_text())
        assert 0 < stats["trainable"] - stats["head_total"] < stats["backbone_total"] / 2
        from plmforge.config import ModelConfig
        from plmforge.models.backbone import load_backbone

        encoder = load_backbone(ModelConfig(name=str(tiny_models["esm"]))).model
        biases = sum(p.numel() for n, p in encoder.named_parameters() if n.endswith("bias") or "LayerNorm" in n)
        assert stats["trainable"] - stats["head_total"] == biases  # the biases and LayerNorm weights, no more
    finally:
        METHODS.pop("bitfit", None)  # (the registry is process-wide: later tests see the built-in methods)


def _documented_commands():
    """Every `plmforge ...` command in the bash blocks of the docs and the README (continued lines joined;
    lines with placeholders such as [--flag] or ... left out)."""
    import re
    import shlex

    for page in [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                words = shlex.split(line, comments=True)
                if words and (words[0] == "plmforge" or words[0].endswith(".venv/bin/plmforge")) and "[" not in line and "..." not in line:
                    yield page.relative_to(REPO), words[1:]


def test_every_documented_command_parses():
    """The commands the pages show use flags and choices that exist (argparse exits on an unknown one); what
    is left over is section.key=value overrides only."""
    from plmforge.cli import build_parser

    parser = build_parser()
    seen = 0
    for page, words in _documented_commands():
        if words[:1] in (["doctor"], ["--version"]) or words == ["ui"]:
            seen += 1
            continue
        try:
            args, extra = parser.parse_known_args(words)
        except SystemExit:
            raise AssertionError(f"{page}: plmforge {' '.join(words)} does not parse") from None
        assert all("=" in e and not e.startswith("-") for e in extra), (page, words, extra)
        seen += 1
    assert seen > 30


def test_the_web_ui_tutorial_quotes_the_run_its_screenshots_show():
    """docs/tutorials/web-ui.md states the numbers recorded with its screenshots (tests/test_ui_tutorial.py
    writes docs/screenshots/tutorial_run.json when run with PLMFORGE_SCREENSHOTS=docs): screenshots made
    again without the page brought up to date fail here."""
    run = json.loads((DOCS / "screenshots" / "tutorial_run.json").read_text())
    page = (DOCS / "tutorials" / "web-ui.md").read_text()
    test, interval, kept = run["test"], run["test_intervals"]["mcc"], run["kept_aside_eval"]
    quoted = [f"{run['labelled']:,} labelled", f"{run['fasta']} to\nscreen", f"On these {run['kept_aside']} peptides",
              f"train {run['splits']['train']:,}",
              f"validation {run['splits']['validation']:,}", f"test {run['splits']['test']:,}",
              f"on the {run['splits']['test']} test peptides the accuracy is\n{test['accuracy']:.3f}",
              f"MCC (a balanced score from -1 to 1, 0 for guessing) is {test['mcc']:.3f} "
              f"[{interval['low']:.3f}, {interval['high']:.3f}]",
              f"composition baseline reaches {run['composition']['mcc']:.3f}",
              f"took {run['start_to_finished_s']} s", f"Here {run['predicted_positive']} of the {run['fasta']}",
              f"the MCC is {kept['mcc']:.3f}\n[{kept['mcc_low']:.3f}, {kept['mcc_high']:.3f}]"]
    verdict = re.search(r"interval ([\d.]+) to ([\d.]+)\)\..*the model is (.*?) it: the difference in \w+ lies between "
                        r"(\S+) and (\S+) ", run["verdict"])
    assert verdict, run["verdict"]
    quoted += [f"from {verdict[1]} to {verdict[2]}", f"**{verdict[3]}**", f"between {verdict[4]} and {verdict[5]}"]
    missing = [q for q in quoted if q not in page]
    assert not missing, f"docs/tutorials/web-ui.md does not state {missing}: update it from tutorial_run.json"
