"""Real transfer learning: LoRA on the pretrained AntiBERTy versus the same head on the frozen model,
same data (the dephosphorylation windows of the Galaxy tutorial), same seed, same number of steps."""

from pathlib import Path

from plmforge.config import load_config
from plmforge.train.run import train

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dephospho"


def _run(tmp_path: Path, method: str):
    cfg = load_config(None, [
        f"data.train={DATA / 'train_sequences.fasta'}", f"data.test={DATA / 'test_sequences.fasta'}",
        "data.problem_type=single_label_classification", "data.num_labels=2", "model.name=antiberty",
        f"method.name={method}", "training.epochs=8", "training.patience=null", "batching.batch_size=16",
        "training.learning_rate=0.001", "training.monitor=auroc", f"output.dir={tmp_path / method}",
        "output.plots=false"])
    return train(cfg)


def test_lora_beats_the_frozen_backbone_on_dephosphorylation_sites(tmp_path: Path):
    frozen = _run(tmp_path, "freeze")
    lora = _run(tmp_path, "lora")
    # measured here: validation AUROC 0.91 (LoRA) vs 0.78 (frozen); test MCC 0.59 vs 0.19
    assert lora.fit.best_value > frozen.fit.best_value + 0.05
    assert lora.test_metrics["metrics"]["mcc"] > frozen.test_metrics["metrics"]["mcc"]
    assert lora.test_metrics["metrics"]["auroc"] > 0.8
