"""Named model inputs: a family that takes a second per-residue input (here BERT's token_type_ids, fed
from a data column) is one registration; the data layer reads the column, the family encodes it, the
collator pads it with the family's pad value, and the backbone is called with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import plmforge
from plmforge.config import ModelConfig, load_config
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.errors import DataError
from plmforge.models.backbone import load_backbone
from plmforge.models.encoding import encode_sequences
from plmforge.models.families import FAMILIES, ModelInput, register_family
from plmforge.models.zoo import ZOO, ZooEntry, register_model
from plmforge.tasks import PROBLEM_TYPES
from plmforge.train.run import train

SEGMENT_PAD = 1  # deliberately not the tokenizer's pad id (0), to see each input padded with its own value


@pytest.fixture
def segment_model(tiny_models):
    family = dataclasses.replace(FAMILIES["bert"], name="bert_segments", model_types=(), inputs=(
        ModelInput("input_ids"), ModelInput("token_type_ids", source="segment", alphabet="01", pad=SEGMENT_PAD)))
    register_family(family)
    register_model(ZooEntry("tiny-bert-segments", str(tiny_models["bert"]), "bert_segments", "tiny", 64, 126))
    yield "tiny-bert-segments"
    del FAMILIES["bert_segments"], ZOO["tiny-bert-segments"]


def _with_segments(src, dst, flip: bool = False):
    dst.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        df = pd.read_csv(src / f"{split}.csv")
        half = [len(s) // 2 for s in df["aa_seq"]]
        first, second = ("1", "0") if flip else ("0", "1")
        df["segment"] = [first * h + second * (len(s) - h) for h, s in zip(half, df["aa_seq"], strict=True)]
        df.to_csv(dst / f"{split}.csv", index=False)
    return dst


def test_family_encodes_and_collator_pads_every_named_input(segment_model):
    bb = load_backbone(ModelConfig(name=segment_model))
    enc = encode_sequences(bb, ["MKTAY", "GLFDIVKKV"], fields={"segment": ["00111", "000011111"]})
    assert set(enc.inputs) == {"input_ids", "token_type_ids"}
    assert enc.inputs["token_type_ids"][0].tolist() == [SEGMENT_PAD, 0, 0, 1, 1, 1, SEGMENT_PAD]  # [CLS] .. [SEP]
    batch = Collator(bb.family.pad_values(bb.tokenizer), PROBLEM_TYPES["single_label_classification"])(
        [EncodedSplit(enc.inputs, enc.special, None)[i] for i in range(2)])
    assert batch["inputs"]["token_type_ids"][0, 7:].tolist() == [SEGMENT_PAD] * 4  # 7 tokens padded to 11
    assert batch["inputs"]["input_ids"][0, 7:].tolist() == [bb.tokenizer.pad_token_id] * 4


def test_a_second_named_input_reaches_the_backbone_in_training_and_prediction(segment_model, amp_small, tmp_path):
    data = _with_segments(amp_small, tmp_path / "data")
    cfg = load_config(None, [f"data.dataset={data}", f"model.name={segment_model}", "method.name=full",
                             "data.problem_type=single_label_classification", "training.epochs=1",
                             f"output.dir={tmp_path / 'run'}"])
    result = train(cfg)
    assert result.test_metrics is not None
    same = plmforge.predict(result.run_dir, data / "test.csv").table
    expected = pd.read_csv(result.run_dir / "test_predictions.csv")
    np.testing.assert_allclose(same["prob_1"], expected["prob_1"], atol=1e-5)
    flipped = plmforge.predict(result.run_dir, _with_segments(amp_small, tmp_path / "flipped", flip=True) / "test.csv")
    assert not np.allclose(flipped.table["prob_1"], same["prob_1"], atol=1e-4)  # the input is really used


def test_a_missing_or_misaligned_input_column_is_a_data_error(segment_model, amp_small, tmp_path):
    cfg = load_config(None, [f"data.dataset={amp_small}", f"model.name={segment_model}",
                             "data.problem_type=single_label_classification", f"output.dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"the run needs a per-residue column 'segment'"):
        train(cfg)
    data = _with_segments(amp_small, tmp_path / "data")
    df = pd.read_csv(data / "train.csv", dtype=str)
    df.loc[2, "segment"] = "01"
    df.to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv, row 3 \(line 4\), column 'segment': 2 symbols for a sequence"):
        train(cfg.replace(data=dataclasses.replace(cfg.data, dataset=str(data))))
    df.loc[2, "segment"] = "2" * len(df.loc[2, "aa_seq"])
    df.to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=r"unknown symbol '2' at position 1"):
        train(cfg.replace(data=dataclasses.replace(cfg.data, dataset=str(data))))

