"""Secondary structure (FLIP 'sampled' split, 3 states) read from its FASTA triple, per-residue head on
the frozen AntiBERTy. AntiBERTy was trained on antibodies only, so the bar is the majority class."""

from pathlib import Path

import numpy as np
import pytest

from plmforge.config import load_config
from plmforge.train.run import train

pytestmark = [pytest.mark.e2e, pytest.mark.pretrained, pytest.mark.shared_data]

SPLITS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "secondary_structure" / "splits"


def test_q3_above_the_majority_class(tmp_path: Path):
    cfg = load_config(None, [
        f"data.dataset={SPLITS}", "data.problem_type=residue_single_label_classification",
        "data.residue_classes=H,E,C", "data.mask_column=mask", "data.max_samples=120", "model.name=antiberty",
        "model.max_length=300", "training.epochs=6", "training.learning_rate=0.001", "training.monitor=accuracy",
        f"output.dir={tmp_path / 'run'}"])
    result = train(cfg)
    q3 = result.test_metrics["metrics"]["accuracy"]
    cm = np.array(result.test_metrics["confusion_matrix"])
    majority = cm.sum(axis=1).max() / cm.sum()
    # measured with 300 training chains: Q3 0.53 against a majority class of about 0.39
    assert q3 > majority + 0.05, (q3, majority)
