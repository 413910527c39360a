from pathlib import Path

import pytest

from plmforge.config import config_to_overrides, load_config
from plmforge.errors import ConfigError


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown key training\.learning_rat .*did you mean 'learning_rate'"):
        load_config(None, ["data.dataset=amp", "training.learning_rat=0.1"])


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"unknown config section 'trainig'.*did you mean 'training'"):
        load_config(None, ["data.dataset=amp", "trainig.epochs=1"])


@pytest.mark.parametrize("override, pattern", [
    ("method.name=lora2", r"method.name must be one of .*got 'lora2'"),
    ("head.pooling=max", r"head.pooling must be one of 'mean', 'attention1d', 'light_attention', 'centre', 'residue', got 'max'"),
    ("batching.mode=tokens", None),
    ("batching.max_tokens=10", r"batching.max_tokens must be >= 64, got 10"),
    ("training.epochs=0", r"training.epochs must be > 0, got 0"),
    ("training.epochs=two", r"training.epochs must be a whole number, got 'two'"),
    ("training.monitor=acuracy", r"training.monitor must be one of .*did you mean 'accuracy'"),
    ("training.scheduler=poly", r"training.scheduler must be one of 'linear', 'cosine', 'step', 'constant'"),
    ("data.problem_type=classification", r"data.problem_type must be one of"),
    ("training.mixed_precision=fp8", r"training.mixed_precision must be one of 'no', 'fp16', 'bf16'"),
    ("training.report_to=mlflow", r"training.report_to must be one of 'wandb', 'tensorboard'"),
])
def test_bad_values_name_field_value_and_choices(override, pattern):
    if pattern is None:
        load_config(None, ["data.dataset=amp", override])
        return
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, ["data.dataset=amp", override])


def test_data_source_is_required():
    with pytest.raises(ConfigError, match=r"set data.dataset \(or data.train\)"):
        load_config(None, ["training.epochs=2"])


def test_warmup_steps_and_ratio_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, ["data.dataset=amp", "training.warmup_steps=5", "training.warmup_ratio=0.1"])


def test_yaml_paths_resolve_relative_to_the_file(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "cfg.yaml").write_text("data:\n  dataset: d\nmodel:\n  name: antiberty\n")
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.data.dataset == str((tmp_path / "d").resolve())
    assert cfg.model.name == "antiberty"  # a zoo name, not a path: left alone


def test_overrides_round_trip_to_the_same_config():
    cfg = load_config(None, ["data.dataset=amp", "training.epochs=3", "training.metrics=accuracy,mcc",
                             "head.pooling=attention1d", "training.max_grad_norm=null"])
    again = load_config(None, config_to_overrides(cfg))
    assert again == cfg
    assert again.training.metrics == ("accuracy", "mcc")
    assert again.training.max_grad_norm is None


def test_saved_config_reruns_as_is(tmp_path: Path):
    from plmforge.config import save_config

    cfg = load_config(None, ["data.dataset=amp", "batching.mode=tokens", "batching.max_tokens=2000"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_several_labelled_files_in_yaml_resolve_relative_to_the_file(tmp_path: Path):
    (tmp_path / "pos.fasta").write_text(">a\nMKT\n")
    (tmp_path / "neg.fasta").write_text(">b\nMKV\n")
    (tmp_path / "c.yaml").write_text("data:\n  train: [pos.fasta::1, neg.fasta::0]\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data.train == f"{tmp_path / 'pos.fasta'}::1,{tmp_path / 'neg.fasta'}::0"


def test_each_method_takes_only_its_own_options():
    cfg = load_config(None, ["data.dataset=amp", "method.name=adalora", "method.rank=4", "method.adalora_init_rank=6"])
    assert cfg.method.options.rank == 4 and cfg.method.options.adalora_init_rank == 6
    assert load_config(None, config_to_overrides(cfg)) == cfg  # the preview command rebuilds it
    with pytest.raises(ConfigError, match=r"method.rank is not an option of method 'ia3' \(it is one of lora, "
                                          r"dora, adalora, qlora\); ia3 takes: target_modules, feedforward_modules"):
        load_config(None, ["data.dataset=amp", "method.name=ia3", "method.rank=4"])
    with pytest.raises(ConfigError, match=r"unknown key method.rnk \(did you mean 'rank'\?\); options of method 'lora'"):
        load_config(None, ["data.dataset=amp", "method.name=lora", "method.rnk=4"])
    with pytest.raises(ConfigError, match=r"method.adalora_init_rank \(2\) must be >= method.rank \(8\)"):
        load_config(None, ["data.dataset=amp", "method.name=adalora", "method.adalora_init_rank=2"])
    with pytest.raises(ConfigError, match=r"method.quant_type must be one of 'nf4', 'fp4', got 'int8'"):
        load_config(None, ["data.dataset=amp", "method.name=qlora", "method.quant_type=int8"])


def test_saved_method_section_is_flat_and_reloads(tmp_path: Path):
    from plmforge.config import save_config

    cfg = load_config(None, ["data.dataset=amp", "method.name=lora", "method.target_modules=query,value"])
    save_config(cfg, tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "method:\n  name: lora\n  rank: 8\n" in text and "cache_embeddings" not in text
    assert load_config(tmp_path / "c.yaml") == cfg


def test_switching_the_method_by_override_leaves_the_files_other_options_out_and_says_so(tmp_path: Path, caplog):
    (tmp_path / "c.yaml").write_text("data:\n  dataset: amp\nmethod:\n  name: lora\n  rank: 4\n  alpha: 16\n")
    cfg = load_config(tmp_path / "c.yaml", ["method.name=freeze"])
    assert cfg.method.name == "freeze"
    assert "method.rank=4, method.alpha=16 do not apply to freeze and are left out" in caplog.text
    with pytest.raises(ConfigError, match="method.rank is not an option of method 'freeze'"):
        load_config(tmp_path / "c.yaml", ["method.name=freeze", "method.rank=2"])  # given now: an error
    assert load_config(tmp_path / "c.yaml", ["method.name=dora"]).method.options.rank == 4  # dora takes it
