"""Structure-token models. The real checkpoints (SaProt, ProSST) cannot be downloaded here, so the
loading paths are exercised with tiny local models that have the same call interface:
- SaProt: a tiny ESM model whose vocabulary is SaProt's (residue x {3Di letter, #} tokens); plmforge
  recognises the family from that vocabulary, as it does for a downloaded SaProt directory;
- ProSST: a tiny model whose code lives in the model directory (auto_map + trust_remote_code, the path
  the real ProSST takes), taking input_ids, ss_input_ids and attention_mask."""

from __future__ import annotations

import json
import logging
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared

from plmforge.api import load_run, predict
from plmforge.config import ModelConfig, load_config
from plmforge.errors import ConfigError, DataError
from plmforge.models.backbone import load_backbone, resolve_model
from plmforge.models.encoding import encode_sequences
from plmforge.train.run import train

THREE_DI = "ACDEFGHIKLMNPQRSTVWY"
AMINO = "ACDEFGHIKLMNPQRSTVWYX"


@pytest.fixture(scope="module")
def saprot_dir(tmp_path_factory) -> Path:
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    d = tmp_path_factory.mktemp("saprot")
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"] + [a + b for a, b in product(AMINO, THREE_DI.lower() + "#")]
    (d / "vocab.txt").write_text("\n".join(vocab))
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=260, pad_token_id=1, mask_token_id=4,
                    position_embedding_type="rotary", token_dropout=False)
    torch.manual_seed(0)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(d)
    EsmTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    return d


CONFIG_CODE = '''
from transformers import PretrainedConfig


class TinyProsstConfig(PretrainedConfig):
    model_type = "prosst"

    def __init__(self, vocab_size=25, ss_vocab_size=2051, hidden_size=32, max_position_embeddings=130, **kw):
        super().__init__(**kw)
        self.vocab_size, self.ss_vocab_size = vocab_size, ss_vocab_size
        self.hidden_size, self.max_position_embeddings = hidden_size, max_position_embeddings
'''

MODEL_CODE = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from .configuration_tiny import TinyProsstConfig


class TinyProsstModel(PreTrainedModel):
    config_class = TinyProsstConfig
    base_model_prefix = "prosst"

    def __init__(self, config):
        super().__init__(config)
        self.tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.structure = nn.Embedding(config.ss_vocab_size, config.hidden_size)
        self.positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layer = nn.TransformerEncoderLayer(config.hidden_size, 4, 64, dropout=0.0, batch_first=True)
        self.post_init()

    def forward(self, input_ids=None, ss_input_ids=None, attention_mask=None, **kwargs):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tokens(input_ids) + self.structure(ss_input_ids) + self.positions(pos)
        x = self.layer(x, src_key_padding_mask=attention_mask == 0)
        return BaseModelOutput(last_hidden_state=x)


class TinyProsstForMaskedLM(PreTrainedModel):
    config_class = TinyProsstConfig
    base_model_prefix = "prosst"

    def __init__(self, config):
        super().__init__(config)
        self.prosst = TinyProsstModel(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(self, input_ids=None, ss_input_ids=None, attention_mask=None, **kwargs):
        hidden = self.prosst(input_ids, ss_input_ids, attention_mask).last_hidden_state
        return MaskedLMOutput(logits=self.head(hidden))
'''


@pytest.fixture(scope="module")
def prosst_dir(tmp_path_factory) -> Path:
    from transformers import EsmTokenizer

    d = tmp_path_factory.mktemp("prosst")
    (d / "configuration_tiny.py").write_text(CONFIG_CODE)
    (d / "modeling_tiny.py").write_text(MODEL_CODE)
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *"ACDEFGHIKLMNPQRSTVWY", "<mask>"]
    (d / "vocab.txt").write_text("\n".join(vocab))
    EsmTokenizer(str(d / "vocab.txt")).save_pretrained(d)
    import sys

    sys.path.insert(0, str(d.parent))
    try:
        mod = __import__(f"{d.name}.modeling_tiny", fromlist=["TinyProsstForMaskedLM"])
        cfg = mod.TinyProsstConfig(vocab_size=len(vocab))
        cfg.auto_map = {"AutoConfig": "configuration_tiny.TinyProsstConfig",
                        "AutoModelForMaskedLM": "modeling_tiny.TinyProsstForMaskedLM"}
        torch.manual_seed(0)
        mod.TinyProsstForMaskedLM(cfg).save_pretrained(d)
    finally:
        sys.path.remove(str(d.parent))
    blob = json.loads((d / "config.json").read_text())
    assert blob["model_type"] == "prosst" and "auto_map" in blob
    return d


@pytest.fixture(scope="module")
def structure_table() -> pd.DataFrame:
    from plmforge.structure.build import structure_tokens

    files = shared("structures", "files")
    paths = [files / n for n in ("1aki.cif", "1cbs.cif", "1igy.cif", "4gcnA.pdb", "2a2lA.pdb", "3e8mA.pdb",
                                 "1h4aX.pdb", "1ahsA.pdb", "5eil.cif", "1dix.cif", "3o5r.cif", "1f2n.cif")]
    table = structure_tokens(paths, workers=2, secondary="pydssp", progress=False).table()
    return table[table["aa_seq"].str.len() <= 250].reset_index(drop=True)


def _split(table: pd.DataFrame, out: Path, columns: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    table = table.assign(label=(table["aa_seq"].str.len() > table["aa_seq"].str.len().median()).astype(int))
    n = len(table)
    for name, part in (("train", table.iloc[: n // 2]), ("validation", table.iloc[n // 2: 3 * n // 4]),
                       ("test", table.iloc[3 * n // 4:])):
        part[["id", "aa_seq", *columns, "label"]].to_csv(out / f"{name}.csv", index=False)
    return out


@pytest.mark.shared_data
def test_saprot_tokens_pair_each_residue_with_its_3di_letter(saprot_dir, structure_table, tmp_path):
    resolved = resolve_model(ModelConfig(name=str(saprot_dir)))
    assert resolved.family.name == "saprot"
    bb = load_backbone(ModelConfig(name=str(saprot_dir)))
    enc = encode_sequences(bb, ["MEVK", "MEVK"], fields={"foldseek_seq": ["dqaP", "d#a#"]})
    tokens = [bb.tokenizer.convert_ids_to_tokens(ids.tolist()) for ids in enc.input_ids]
    assert tokens == [["<cls>", "Md", "Eq", "Va", "Kp", "<eos>"], ["<cls>", "Md", "E#", "Va", "K#", "<eos>"]]
    with pytest.raises(DataError, match=r"unknown 3Di symbol 'B' at position 2"):
        encode_sequences(bb, ["MEV"], fields={"foldseek_seq": ["dBa"]}, rows=["data.csv, row 7"])
    data = _split(structure_table, tmp_path / "data", ["foldseek_seq"])
    result = train(load_config(None, [f"data.dataset={data}", f"model.name={saprot_dir}", "method.name=lora",
                                      "data.problem_type=single_label_classification", "training.epochs=1",
                                      f"output.dir={tmp_path / 'run'}"]))
    assert result.test_metrics is not None
    test = pd.read_csv(data / "test.csv")
    before = predict(result.run_dir, data / "test.csv").table
    test.assign(foldseek_seq=["#" * len(s) for s in test["aa_seq"]]).to_csv(tmp_path / "hidden.csv", index=False)
    after = predict(result.run_dir, tmp_path / "hidden.csv").table
    assert not np.allclose(before["prob_1"], after["prob_1"])  # the structure letters reach the model
    bare = tmp_path / "bare.csv"
    test[["id", "aa_seq"]].to_csv(bare, index=False)
    with pytest.raises(DataError, match="foldseek_seq"):
        predict(result.run_dir, bare)


@pytest.mark.shared_data
def test_prosst_loads_its_own_code_only_when_trusted(prosst_dir, structure_table, tmp_path, caplog):
    with pytest.raises(ConfigError, match="trust_remote_code=true"):
        load_backbone(ModelConfig(name=str(prosst_dir)))
    with caplog.at_level(logging.WARNING, logger="plmforge"):
        bb = load_backbone(ModelConfig(name=str(prosst_dir), trust_remote_code=True))
    assert f"running the model code that {prosst_dir}" in caplog.text
    assert bb.family.name == "prosst" and type(bb.model).__name__ == "TinyProsstModel"
    from plmforge.models.families import family_for_directory

    assert family_for_directory(prosst_dir, {"model_type": "ProSST"}).name == "prosst"  # as ProSST's own config
    enc = encode_sequences(bb, ["MEVK"], fields={"prosst_tokens": ["0,5,2047,12"]})
    assert enc.inputs["ss_input_ids"][0].tolist() == [1, 3, 8, 2050, 15, 2]
    rng = np.random.default_rng(0)
    table = structure_table.assign(prosst_tokens=[" ".join(map(str, rng.integers(0, 2048, len(s))))
                                                  for s in structure_table["aa_seq"]])
    data = _split(table, tmp_path / "data", ["prosst_tokens"])
    result = train(load_config(None, [f"data.dataset={data}", f"model.name={prosst_dir}", "method.name=freeze",
                                      "model.trust_remote_code=true", "model.attention=eager",
                                      "data.problem_type=single_label_classification", "training.epochs=2",
                                      f"output.dir={tmp_path / 'run'}", f"method.cache_dir={tmp_path / 'store'}"]))
    assert result.test_metrics is not None
    run = load_run(result.run_dir)
    test = pd.read_csv(data / "test.csv")
    test.assign(prosst_tokens=[",".join(map(str, rng.integers(0, 2048, len(s)))) for s in test["aa_seq"]]).to_csv(
        tmp_path / "other.csv", index=False)
    assert not np.allclose(predict(run, data / "test.csv").table["prob_1"],
                           predict(run, tmp_path / "other.csv").table["prob_1"])
    bracketed = test.assign(prosst_tokens=["[" + t.replace(" ", ", ") + "]" for t in test["prosst_tokens"]])
    bracketed.to_csv(tmp_path / "bracketed.csv", index=False)  # lists as pandas writes them
    np.testing.assert_allclose(predict(run, tmp_path / "bracketed.csv").table["prob_1"],
                               predict(run, data / "test.csv").table["prob_1"])
    digits = test.copy()
    digits.loc[0, "prosst_tokens"] = "7" * len(digits.loc[0, "aa_seq"])  # digits without separators
    digits.to_csv(tmp_path / "digits.csv", index=False)
    with pytest.raises(DataError, match="1 whole-number tokens for"):
        predict(run, tmp_path / "digits.csv")
    broken = test.copy()
    broken.loc[0, "prosst_tokens"] = "1,2,x"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(DataError, match="row 1"):
        predict(run, tmp_path / "broken.csv")
