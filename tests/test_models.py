"""Tokenisation per family, the zoo registry, heads (padding invariance) and the method registry."""


import pytest
import torch

from plmforge.config import HeadConfig, ModelConfig
from plmforge.data.batching import Collator, EncodedSplit
from plmforge.data.validate import STANDARD
from plmforge.errors import ConfigError
from plmforge.heads import HEADS, build_head
from plmforge.methods import METHODS
from plmforge.models.backbone import load_backbone
from plmforge.models.encoding import encode_sequences
from plmforge.models.families import FAMILIES
from plmforge.models.task_model import TaskModel, batch_kwargs
from plmforge.models.zoo import ZOO, zoo_rows
from plmforge.tasks import PROBLEM_TYPES

POOLED = [name for name, spec in HEADS.items() if not spec.per_residue]
SINGLE = PROBLEM_TYPES["single_label_classification"]

EXPECTED_SPECIALS = {  # (first token, last token) of an encoded sequence; None = a residue
    "esm": ("<cls>", "<eos>"), "bert": ("[CLS]", "[SEP]"), "t5": (None, "</s>"), "antiberty": ("[CLS]", "[SEP]"),
}


def _backbone(tiny_models, family: str, **kw):
    name = "antiberty" if family == "antiberty" else str(tiny_models[family])
    return load_backbone(ModelConfig(name=name, **kw))


@pytest.mark.parametrize("family", ["esm", "bert", "t5", pytest.param("antiberty", marks=pytest.mark.pretrained)])
def test_standard_residues_never_become_unknown(tiny_models, family):
    bb = _backbone(tiny_models, family)
    enc = encode_sequences(bb, [STANDARD, STANDARD[::-1] * 3])
    assert enc.n_unknown == 0
    tokens = bb.tokenizer.convert_ids_to_tokens(enc.input_ids[0].tolist())
    residues = [t for t, s in zip(tokens, enc.special[0]) if not s]
    assert [t.lstrip("\u2581") for t in residues] == list(STANDARD)  # one token per residue, in order
    first, last = EXPECTED_SPECIALS[family]
    assert tokens[-1] == last and enc.special[0][-1]
    if first is None:
        assert not enc.special[0][0]  # T5 encoders have no CLS: the first token is the first residue
    else:
        assert tokens[0] == first and enc.special[0][0]


@pytest.mark.parametrize("family, rare_tokens", [("esm", "UXBZO"), ("bert", "XXXXX"), ("t5", "XXXXX")])
def test_rare_residue_rule_per_family(tiny_models, family, rare_tokens):
    bb = _backbone(tiny_models, family)
    enc = encode_sequences(bb, ["UXBZO"])
    tokens = [t.lstrip("\u2581") for t, s in zip(bb.tokenizer.convert_ids_to_tokens(enc.input_ids[0].tolist()),
                                                 enc.special[0]) if not s]
    assert "".join(tokens) == rare_tokens


@pytest.mark.pretrained
def test_antiberty_has_no_x_so_rare_residues_are_counted_as_unknown(tiny_models):
    bb = _backbone(tiny_models, "antiberty")
    enc = encode_sequences(bb, ["MKUX"])
    assert enc.n_unknown == 2 and enc.rare_mapped == {"U": 1}
    assert enc.special[0].tolist() == [True, False, False, False, False, True]


def test_truncation_is_at_residue_level_and_counted(tiny_models):
    bb = _backbone(tiny_models, "esm", max_length=10)
    enc = encode_sequences(bb, ["A" * 25, "M" * 5])
    assert enc.n_truncated == 1
    assert len(enc.input_ids[0]) == 12 and enc.special[0][-1]  # 10 residues + <cls> + <eos>


def test_max_length_above_the_model_limit_is_an_error(tiny_models):
    with pytest.raises(ConfigError, match="exceeds what"):
        _backbone(tiny_models, "esm", max_length=100000)


def test_family_comes_from_config_json_not_the_path(tiny_models, tmp_path):
    import shutil

    misleading = tmp_path / "esm2_looking_name"
    shutil.copytree(tiny_models["bert"], misleading)
    assert load_backbone(ModelConfig(name=str(misleading))).family.name == "bert"


def test_unknown_model_name_is_explained():
    with pytest.raises(ConfigError, match="not a zoo model, a model directory or a hub id"):
        load_backbone(ModelConfig(name="./no/such/dir"))


def test_zoo_registry_covers_the_documented_models():
    names = set(ZOO)
    for expected in ["esm2_t6_8M_UR50D", "esm2_t48_15B_UR50D", "esm1b_t33_650M_UR50S", "esm1v_t33_650M_UR90S_5",
                     "prot_bert", "prot_bert_bfd", "IgBert", "IgBert_unpaired", "prot_t5_xl_uniref50",
                     "prot_t5_xl_bfd", "IgT5", "IgT5_unpaired", "ankh-base", "ankh-large", "ProSST-2048",
                     "Prime_690M", "antiberty"]:
        assert expected in names
    assert len(zoo_rows()) == len(ZOO)
    assert ZOO["prot_t5_xl_uniref50"].lora_targets == ("q", "k", "v")
    assert FAMILIES["t5"].split_residues and not FAMILIES["esm"].split_residues


def test_zoo_models_that_cannot_load_as_asked_say_why():
    # ProSST runs its own code: only with the explicit switch (refused before anything is fetched)
    with pytest.raises(ConfigError, match="review it, then set model.trust_remote_code=true"):
        load_backbone(ModelConfig(name="ProSST-2048"))
    with pytest.raises(ConfigError, match="cannot be used yet: its model code exists only in its hub repository"):
        load_backbone(ModelConfig(name="Prime_690M"))


# ---- heads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", POOLED)
def test_head_ignores_padding_and_special_tokens(pooling):
    torch.manual_seed(0)
    head = build_head(pooling, 16, 16, 3, 0.1).eval()
    hidden = torch.randn(1, 7, 16)
    mask = torch.tensor([[False, True, True, True, True, False, False]])
    base = head(hidden, mask)
    # more padding, with garbage in the padded and special positions
    padded = torch.cat([hidden, torch.randn(1, 9, 16) * 50], dim=1)
    padded[0, 0] = 1e3
    padded[0, 5:7] = -1e3
    mask2 = torch.cat([mask, torch.zeros(1, 9, dtype=torch.bool)], dim=1)
    assert torch.allclose(head(padded, mask2), base, atol=1e-5)


@pytest.mark.parametrize("family", ["esm", "bert", "t5"])
@pytest.mark.parametrize("pooling", POOLED)
def test_a_sequence_prediction_does_not_depend_on_its_batch(tiny_models, family, pooling):
    from plmforge.data.batching import Collator, EncodedSplit

    bb = _backbone(tiny_models, family)
    torch.manual_seed(0)
    model = TaskModel(bb.model, build_head(pooling, bb.hidden_size, 16, 2, 0.0), SINGLE, 2)
    model.eval()
    enc = encode_sequences(bb, ["MKTAYIAK", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"])
    ds = EncodedSplit(enc.inputs, enc.special, None)
    collate = Collator(bb.family.pad_values(bb.tokenizer), SINGLE)
    with torch.no_grad():
        alone = model(**batch_kwargs(collate([ds[0]]))).logits
        together = model(**batch_kwargs(collate([ds[0], ds[1]]))).logits[:1]
    assert torch.allclose(alone, together, atol=1e-5)


# ---- methods -------------------------------------------------------------------------------------

def _task_model(tiny_models, method: str):
    bb = _backbone(tiny_models, "esm")
    model = TaskModel(bb.model, build_head("mean", bb.hidden_size, 16, 2, 0.0), SINGLE, 2)
    METHODS[method].apply(model, METHODS[method].options())
    return model


def test_freeze_trains_only_the_head(tiny_models):
    model = _task_model(tiny_models, "freeze")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    model.train()
    assert not model.backbone.training and model.head.training  # frozen backbone: no dropout
    assert not any(m.training for m in model.backbone.modules())
    model.backbone.encoder.layer[0].train()  # switched by someone else: the next switch puts it back
    model.train()
    assert model.training and not any(m.training for m in model.backbone.modules())
    model.eval()
    assert not model.training and not model.head.training
    model.train()
    assert all(m.training for m in model.head.modules())


def test_full_trains_everything(tiny_models):
    model = _task_model(tiny_models, "full")
    assert all(p.requires_grad for p in model.parameters())


def test_head_config_choices_come_from_the_registry():
    for name in HEADS:
        HeadConfig(pooling=name)
    assert set(METHODS) >= {"freeze", "full"}


@pytest.mark.parametrize("family", ["esm", "bert", "t5"])
def test_sdpa_and_eager_attention_agree(tiny_models, family):
    sdpa, eager = (_backbone(tiny_models, family, attention=a) for a in ("sdpa", "eager"))
    assert sdpa.model.config._attn_implementation == "sdpa" and eager.model.config._attn_implementation == "eager"
    enc = encode_sequences(sdpa, ["MKTAYIAKQRQISFVK", "GLFDIVKKV"])
    ds = EncodedSplit(enc.inputs, enc.special, None)
    batch = batch_kwargs(Collator(sdpa.family.pad_values(sdpa.tokenizer), SINGLE)([ds[0], ds[1]]))
    with torch.no_grad():
        a = sdpa.model(**batch["inputs"], attention_mask=batch["attention_mask"]).last_hidden_state
        b = eager.model(**batch["inputs"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


@pytest.mark.parametrize("family", ["esm", "bert"])
def test_attention_dropout_overrides_the_checkpoint(tiny_models, family):
    assert _backbone(tiny_models, family).model.config.attention_probs_dropout_prob == 0.1  # the checkpoints' own
    backbone = _backbone(tiny_models, family, attention_dropout=0.0)
    assert backbone.model.config.attention_probs_dropout_prob == 0.0
    assert backbone.model.config.hidden_dropout_prob == 0.1  # only the attention weights' dropout changes


def test_attention_dropout_is_refused_where_the_family_has_none_of_its_own(tiny_models):
    with pytest.raises(ConfigError, match="t5 models have no dropout of their own on attention weights"):
        _backbone(tiny_models, "t5", attention_dropout=0.0)
    with pytest.raises(ConfigError, match=r"model.attention_dropout must be in \[0, 1\)"):
        ModelConfig(name="antiberty", attention_dropout=1.5)
