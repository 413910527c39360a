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
AMINO = "ACDEFGHIKLMNPQRSTVWY#"


@pytest.fixture(scope="module")
def saprot_dir(tmp_path_factory) -> Path:
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    d = tmp_path_factory.mktemp("saprot")
    # SaProt's layout: 5 specials + (20 residues and #, a residue hidden) x (20 3Di letters and #) = 446 tokens
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


# ---- structure-aware mutation scoring ------------------------------------------------------------------

@pytest.fixture(scope="module")
def saprot_mlm_dir(saprot_dir, tmp_path_factory) -> Path:
    """The tiny SaProt model with a masked-LM head (SaProt's checkpoints are EsmForMaskedLM)."""
    import shutil

    from transformers import AutoConfig, EsmForMaskedLM

    d = tmp_path_factory.mktemp("saprot_mlm")
    shutil.copytree(saprot_dir, d, dirs_exist_ok=True)
    for f in d.glob("model*.safetensors"):
        f.unlink()
    torch.manual_seed(3)
    EsmForMaskedLM(AutoConfig.from_pretrained(d)).save_pretrained(d)
    return d


def _saprot_by_hand(model, tokenizer, seq: str, letters: str, site: int, masked: bool) -> np.ndarray:
    """log p of each of the 20 residues at the site (0-based), its probability summed over its tokens with every
    structure letter (SaProt's scoring), from the model's own LM head; the site written as `#` + its 3Di
    letter when masked."""
    tokens = [a + b.lower() for a, b in zip(seq, letters, strict=True)]
    if masked:
        tokens[site] = "#" + letters[site].lower()
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["<cls>", *tokens, "<eos>"])])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, site + 1], dim=-1)
    probs = lp.exp()
    return np.log([float(sum(probs[tokenizer.convert_tokens_to_ids(a + c)] for c in THREE_DI.lower() + "#"))
                   for a in "ACDEFGHIKLMNPQRSTVWY"])


@pytest.mark.shared_data
def test_saprot_scores_a_masked_site_with_its_3di_letter_kept(saprot_mlm_dir, saprot_dir, tmp_path):
    from transformers import EsmForMaskedLM, EsmTokenizer

    from plmforge.mutate import scan, score
    from plmforge.mutate.lm import load_masked_lm
    from plmforge.mutate.structure import foldseek_letters
    from plmforge.structure.reader import read_structure

    pdb = shared("structures", "files", "1A8O.pdb")
    wt = read_structure(pdb).chains[0].sequence
    letters = foldseek_letters(pdb, None)
    assert len(letters) == len(wt) and set(letters) <= set(THREE_DI)
    model = EsmForMaskedLM.from_pretrained(saprot_mlm_dir).eval()
    tokenizer = EsmTokenizer.from_pretrained(saprot_mlm_dir)
    lm = load_masked_lm(str(saprot_mlm_dir))
    positions = [1, 17, 40, len(wt)]
    result = scan(lm, structure=pdb, positions=",".join(map(str, positions)), out=tmp_path / "scan",
                  progress=False)  # the wild type is the structure's chain
    aa = {a: i for i, a in enumerate("ACDEFGHIKLMNPQRSTVWY")}
    for k, p in enumerate(positions):
        lp = _saprot_by_hand(model, tokenizer, wt, letters, p - 1, masked=True)
        np.testing.assert_allclose(result.matrix[k], lp - lp[aa[wt[p - 1]]], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "scan" / "scan.json").read_text())["structure_tokens"] == letters
    # the structure reaches the scores: the same scan with the 3Di letters unknown (#) differs
    hidden = scan(lm, wt, structure_tokens="#" * len(wt), positions="17", progress=False)
    assert not np.allclose(hidden.matrix[0], result.matrix[1])
    # wild-type marginals: one unmasked pass, read at the residue + 3Di tokens
    wt_marg = scan(lm, wt, structure_tokens=letters.lower(), positions="17,40", scoring="wt_marginal",
                   progress=False)
    for k, p in enumerate([17, 40]):
        lp = _saprot_by_hand(model, tokenizer, wt, letters, p - 1, masked=False)
        np.testing.assert_allclose(wt_marg.matrix[k], lp - lp[aa[wt[p - 1]]], rtol=1e-4, atol=1e-5)
    # a double mutant is the sum of its sites; pll changes the residues and keeps the 3Di letters
    site = {p: k for k, p in enumerate(positions)}
    mt1, mt2 = ("A" if wt[16] != "A" else "G"), ("W" if wt[39] != "W" else "Y")
    both = score(lm, [f"{wt[16]}17{mt1}:{wt[39]}40{mt2}"], wt, structure_tokens=letters, progress=False)
    expected = result.matrix[site[17], aa[mt1]] + result.matrix[site[40], aa[mt2]]
    assert both.table["score"].iloc[0] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    pll = score(lm, [f"{wt[16]}17{mt1}"], wt, structure_tokens=letters, scoring="pll", progress=False)
    mutant = wt[:16] + mt1 + wt[17:]

    def pll_by_hand(seq):
        return sum(_saprot_by_hand(model, tokenizer, seq, letters, i, True)[aa[seq[i]]] for i in range(len(seq)))

    assert pll.table["score"].iloc[0] == pytest.approx(pll_by_hand(mutant) - pll_by_hand(wt), rel=1e-4, abs=1e-4)


@pytest.mark.shared_data
def test_structure_for_mutation_scoring_is_refused_when_it_does_not_fit(saprot_mlm_dir, saprot_dir, tmp_path,
                                                                      tiny_models):
    from plmforge.mutate import scan
    from plmforge.mutate.lm import load_masked_lm

    pdb = shared("structures", "files", "1A8O.pdb")
    lm = load_masked_lm(str(saprot_mlm_dir))
    with pytest.raises(ConfigError, match="3Di letter at every residue"):
        scan(lm, "MEVKLT", progress=False)
    with pytest.raises(DataError, match=r"differs from the wild type \(6 residues\) first at position 1"):
        scan(lm, "QEVKLT", structure=pdb, progress=False)
    with pytest.raises(DataError, match="5 3Di letters for a wild type of 6 residues"):
        scan(lm, "MEVKLT", structure_tokens="dqapv", progress=False)
    with pytest.raises(DataError, match="'B' at position 2 is not a 3Di letter"):
        scan(lm, "MEVKLT", structure_tokens="dBapvv", progress=False)
    with pytest.raises(DataError, match=r"2 protein chains \(A, B\)"):
        scan(lm, structure=shared("structures", "files", "1k6p.cif"), progress=False)
    with pytest.raises(DataError, match="no protein chain 'C'"):
        scan(lm, structure=shared("structures", "files", "1k6p.cif"), chain="C", progress=False)
    with pytest.raises(ConfigError, match="give the structure once"):
        scan(lm, "MEVKLT", structure=pdb, structure_tokens="dqapvv", progress=False)
    # checked before any weight is read: a sequence-only model given a structure, by name
    with pytest.raises(ConfigError, match="reads sequences only"):
        scan(str(tiny_models["esm"]), "MEVKLT", structure=pdb, progress=False)
    with pytest.raises(ConfigError, match="LM head weights are missing"):  # the encoder alone has no head
        load_masked_lm(str(saprot_dir))
    # a long structure string given inline is read as the tokens (not tried as a file name)
    from types import SimpleNamespace

    from plmforge.mutate.structure import numbering_note, structure_symbols

    assert structure_symbols("foldseek_seq", "A" * 300, "m", tokens="d" * 300) == ["d"] * 300
    assert structure_symbols("prosst_tokens", "A" * 300, "m", tokens=",".join(["7"] * 300)) == ["7"] * 300
    # a structure whose numbering has gaps, or starts elsewhere than 1, is said to be renumbered
    assert numbering_note(SimpleNamespace(name="A", numbers=[1, 2, 3])) is None
    note = numbering_note(SimpleNamespace(name="A", numbers=[5, 6, 9, 10]))
    assert "numbered 5-10" in note and "1 gap" in note and "4 observed residues" in note


def test_prosst_scores_a_masked_site_with_its_structure_tokens_kept(prosst_dir, tmp_path):
    from plmforge.mutate import scan
    from plmforge.mutate.lm import load_masked_lm

    with pytest.raises(ConfigError, match="--trust-remote-code"):
        load_masked_lm(str(prosst_dir))
    lm = load_masked_lm(str(prosst_dir), trust_remote_code=True)
    assert lm.structure_field == "prosst_tokens"
    wt = "MKTAYIAKQRQISFVKSHFSRQ"
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 2048, len(wt))
    (tmp_path / "tokens.txt").write_text(" ".join(map(str, tokens)))
    result = scan(lm, wt, structure_tokens=str(tmp_path / "tokens.txt"), positions="2,9,22", progress=False)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    vocab = lm.tokenizer.convert_tokens_to_ids(list(aa))
    for k, p in enumerate([2, 9, 22]):
        ids = torch.tensor([lm.tokenizer.convert_tokens_to_ids(["<cls>", *wt, "<eos>"])])
        ids[0, p] = lm.tokenizer.mask_token_id
        ss = torch.tensor([[1, *(tokens + 3), 2]])
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(input_ids=ids, ss_input_ids=ss,
                                            attention_mask=torch.ones_like(ids)).logits[0, p], -1)[vocab].numpy()
        np.testing.assert_allclose(result.matrix[k], lp - lp[aa.index(wt[p - 1])], rtol=1e-4, atol=1e-5)
    other = scan(lm, wt, structure_tokens=",".join(map(str, (tokens + 7) % 2048)), positions="9", progress=False)
    assert not np.allclose(other.matrix[0], result.matrix[1])  # the structure tokens reach the model
    with pytest.raises(ConfigError, match="ProSST's structure quantizer"):
        scan(lm, wt, structure="some.pdb", progress=False)
    with pytest.raises(ConfigError, match="give them with --structure-tokens"):
        scan(lm, wt, progress=False)
    with pytest.raises(DataError, match="'x7' \\(token 2\\) is not a whole number"):
        scan(lm, wt, structure_tokens="3 x7 9", progress=False)
    with pytest.raises(ConfigError, match="out of the model's vocabulary .*ss_input_ids"):
        scan(lm, wt, structure_tokens=",".join(["5000"] * len(wt)), positions="2", progress=False)


@pytest.mark.shared_data
def test_mutations_tab_reads_a_structure_file_for_saprot(saprot_mlm_dir, tmp_path):
    """The Mutations tab's scan and DMS scoring with a structure file and no pasted sequence: the chain's
    sequence is the wild type and the scores are plmforge.mutate's with the structure."""
    from plmforge.mutate import scan, score
    from plmforge.ui.app import App
    from plmforge.ui.tab_mutate import dms_outputs, scan_outputs

    pdb = str(shared("structures", "files", "1A8O.pdb"))
    app = App(tmp_path / "runs", tmp_path / "work")
    msg, heatmap, _, download = scan_outputs(app, "", "1-5", str(saprot_mlm_dir), "masked_marginal", 30, pdb, " ")
    assert "95 substitutions at 5 positions" in msg and heatmap["visible"]
    expected = scan(str(saprot_mlm_dir), structure=pdb, positions="1-5", progress=False).table
    got = pd.read_csv(download.value["path"])
    assert list(got["mutant"]) == list(expected["mutant"])
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5)
    wt = expected.sort_values("position")["wt"].iloc[0]
    pd.DataFrame({"mutant": [f"{wt}1{a}" for a in "AGWL" if a != wt][:3], "DMS_score": [0.1, 0.5, -1.0]}).to_csv(
        tmp_path / "assay.csv", index=False)
    msg, metrics, scatter, _ = dms_outputs(app, "", str(tmp_path / "assay.csv"), str(saprot_mlm_dir),
                                           "masked_marginal", pdb, None)
    assert "3 variants scored" in msg and metrics["visible"], msg
    direct = score(str(saprot_mlm_dir), tmp_path / "assay.csv", structure=pdb, progress=False)
    assert "Spearman" in metrics["value"].to_csv() and direct.report is not None


@pytest.mark.shared_data
def test_saprot_benchmark_scores_each_variant_in_its_structure_chunk(saprot_mlm_dir, tmp_path):
    """ProteinGym's layout: an assay whose structure covers the whole wild type, one whose wild type has two
    residues more than its structure (pdb_range 3-72), and one split into two structure files (pdb_file and
    pdb_range joined by |). As ProteinGym scores SaProt, each variant is scored with the sequence and 3Di
    letters of the chunk holding it: equal to mutate score on that chunk with shifted positions. A SaProt
    benchmark without structures, and a variant spanning two chunks, are refused."""
    import shutil

    from plmforge.mutate import score
    from plmforge.mutate.benchmark import benchmark
    from plmforge.mutate.structure import foldseek_letters
    from plmforge.structure.reader import read_structure

    pdb = shared("structures", "files", "1A8O.pdb")
    chain = read_structure(pdb).chains[0].sequence
    letters = foldseek_letters(pdb, None)
    folder, structures = tmp_path / "gym", tmp_path / "af2"
    folder.mkdir()
    structures.mkdir()
    shutil.copy(pdb, structures / "P1.pdb")
    shutil.copy(pdb, structures / "P2.pdb")
    n = len(chain)
    assays = {"ONE": (chain, "P1.pdb", f"1-{n}", (1, 5, 30, n), 0),
              "TWO": ("MK" + chain, "P1.pdb", f"3-{n + 2}", (3, 7, 32, n + 2), 2),
              "THREE": (chain + chain, "P1.pdb|P2.pdb", f"1-{n}|{n + 1}-{2 * n}", (1, 30, n + 1, n + 30), None)}
    rows = []
    for dms_id, (wt, files, span, positions, _) in assays.items():
        muts = [f"{wt[p - 1]}{p}{a}" for p in positions for a in "AGLW" if a != wt[p - 1]]
        pd.DataFrame({"mutant": muts, "DMS_score": np.arange(len(muts), dtype=float)}).to_csv(
            folder / f"{dms_id}.csv", index=False)
        rows.append({"DMS_id": dms_id, "DMS_filename": f"{dms_id}.csv", "target_seq": wt, "pdb_file": files,
                     "pdb_range": span})
    pd.DataFrame(rows).to_csv(folder / "DMS_substitutions.csv", index=False)
    with pytest.raises(ConfigError, match="give --structures"):
        benchmark(str(saprot_mlm_dir), folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    result = benchmark(str(saprot_mlm_dir), folder, tmp_path / "out", structures=structures, progress=False)
    assert list(result.by_assay["DMS_id"]) == ["ONE", "TWO", "THREE"]
    for dms_id in assays:
        got = pd.read_csv(tmp_path / "out" / "scores" / f"{dms_id}.csv")
        shift = {"ONE": 0, "TWO": 2}.get(dms_id)
        expected = []
        for mutant in got["mutant"]:
            p = int(mutant[1:-1])
            offset = shift if shift is not None else (0 if p <= n else n)
            expected.append(f"{mutant[0]}{p - offset}{mutant[-1]}")
        direct = score(str(saprot_mlm_dir), expected, chain, structure_tokens=letters, progress=False)
        np.testing.assert_allclose(got["score"], direct.table["score"], rtol=1e-5, atol=1e-6)
    # a double mutant with one site in each structure file cannot be scored as ProteinGym scores it
    pd.DataFrame({"mutant": [f"{chain[0]}1A:{chain[0]}{n + 1}G"], "DMS_score": [0.0]}).to_csv(folder / "THREE.csv",
                                                                                            index=False)
    with pytest.raises(DataError, match="spans two structure files"):
        benchmark(str(saprot_mlm_dir), folder, tmp_path / "out2", structures=structures, progress=False)
