"""The README's quickstart, end to end: the real pretrained AntiBERTy on the bundled AMP example."""

import json
from pathlib import Path

import pytest
import yaml

from plmforge.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.pretrained]

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_trains_antiberty_and_reaches_real_accuracy(tmp_path: Path):
    cfg = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    cfg["data"]["dataset"] = str(REPO / "examples" / "data" / "amp")
    cfg["output"]["dir"] = str(tmp_path / "run")
    (tmp_path / "quickstart.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "quickstart.yaml")]) == 0
    rd = tmp_path / "run"
    metrics = json.loads((rd / "test_metrics.json").read_text())["metrics"]
    # a frozen pretrained backbone separates antimicrobial from random peptides well above chance
    assert metrics["accuracy"] > 0.8 and metrics["mcc"] > 0.6 and metrics["auroc"] > 0.9
    assert (rd / "plots" / "loss.png").stat().st_size > 10_000
    # prediction from the run directory alone
    out = tmp_path / "pred.csv"
    assert main(["predict", str(rd), "--input", str(REPO / "examples" / "data" / "amp" / "test.csv"),
                 "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 466
    # bf16 inference (opt-in) agrees with fp32 within noise on the real model and data where the CPU runs
    # bf16 natively; where it only emulates it (tens of times slower), it is refused with the fp32 setting
    import plmforge
    import torch

    from plmforge.errors import ConfigError
    from plmforge.precision import native_low_precision

    test_csv = REPO / "examples" / "data" / "amp" / "test.csv"
    if native_low_precision(torch.bfloat16, "cpu").native:
        bf16 = plmforge.evaluate(rd, test_csv, precision="bf16").metrics
        for name in ("accuracy", "mcc", "auroc"):
            assert abs(bf16[name] - metrics[name]) <= 0.01, (name, bf16[name], metrics[name])
    else:
        with pytest.raises(ConfigError, match="far slower than float32 here"):
            plmforge.evaluate(rd, test_csv, precision="bf16")
