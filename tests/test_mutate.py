"""Zero-shot mutation scoring: notation, scores against a hand computation with the model's own LM head,
windows, additivity, pseudo-log-likelihoods, ProteinGym's metrics, scans (outputs, resume, safety) and
variant files, and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from plmforge.errors import ConfigError, DataError, RunDirError
from plmforge.mutate import api, dms
from plmforge.mutate import scoring as sc
from plmforge.mutate.lm import load_masked_lm
from plmforge.data.notation import (
    AMINO_ACIDS,
    Substitution,
    check_against,
    parse_positions,
    parse_variant,
)

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"  # 33 residues


@pytest.fixture(scope="module")
def mlm_dirs(tiny_models, tmp_path_factory):
    """Tiny random ESM and BERT masked LMs (heads included), with the tiny backbones' tokenizers."""
    from transformers import AutoConfig, BertForMaskedLM, EsmForMaskedLM

    root = tmp_path_factory.mktemp("mlm")
    out = {}
    for family, cls in (("esm", EsmForMaskedLM), ("bert", BertForMaskedLM)):
        torch.manual_seed(1)
        d = root / family
        shutil.copytree(tiny_models[family], d)
        for f in d.glob("model*.safetensors"):
            f.unlink()
        cls(AutoConfig.from_pretrained(d)).save_pretrained(d)
        out[family] = d
    return out


@pytest.fixture(scope="module")
def lms(mlm_dirs):
    return {family: load_masked_lm(str(d)) for family, d in mlm_dirs.items()}


def _by_hand(lm, window_seq: str, site: int, masked: bool) -> np.ndarray:
    """log-softmax of the model's own LM head at residue `site` (0-based) of `window_seq`, tokenised by the
    tokenizer itself (BERT-style vocabularies take space-separated residues)."""
    text = " ".join(window_seq) if lm.family.split_residues else window_seq
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    offset = 1  # [CLS] / <cls> first in both families
    if masked:
        ids[0, site + offset] = lm.tokenizer.mask_token_id
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0, site + offset]
    lp = torch.log_softmax(logits, -1)
    return np.array([lp[lm.tokenizer.convert_tokens_to_ids(a)].item() for a in AMINO_ACIDS])


# ---- notation -----------------------------------------------------------------------------------

def test_notation_parses_single_and_multiple_substitutions():
    assert parse_variant("A42G") == (Substitution(42, "A", "G"),)
    assert parse_variant("K50R:A42G") == (Substitution(42, "A", "G"), Substitution(50, "K", "R"))
    for bad, match in (("A42", "not a substitution"), ("A0G", "start at 1"), ("A42G:A42C", "twice"),
                       ("J42G", "20 amino acids"), ("A42G:", "empty")):
        with pytest.raises(DataError, match=match):
            parse_variant(bad)


def test_the_wild_type_letter_is_checked_and_the_error_names_the_mutant():
    check_against(parse_variant("M1A:K2R"), WT)
    with pytest.raises(DataError, match=r"A3G: the wild type has 'T' at position 3, not 'A'"):
        check_against(parse_variant("A3G"), WT)
    with pytest.raises(DataError, match="beyond the wild type's 33 residues"):
        check_against(parse_variant("A40G"), WT)


def test_positions_accept_ranges_and_refuse_what_is_outside():
    assert parse_positions("2-4,7", 10) == [2, 3, 4, 7]
    assert parse_positions(None, 3) == [1, 2, 3]
    with pytest.raises(DataError, match="outside 1-10"):
        parse_positions("9-12", 10)


# ---- scores against the model's own head ---------------------------------------------------------

@pytest.mark.parametrize("family", ["esm", "bert"])
def test_masked_marginals_equal_the_lm_head_by_hand(lms, family):
    lm = lms[family]
    positions = [1, 7, 20, 33]
    got = sc.marginal_matrix(lm, WT, positions, "masked_marginal")
    for row, p in zip(got, positions, strict=True):
        lp = _by_hand(lm, WT, p - 1, masked=True)
        assert np.allclose(row, lp - lp[AMINO_ACIDS.index(WT[p - 1])], atol=1e-5)
        assert row[AMINO_ACIDS.index(WT[p - 1])] == 0.0


@pytest.mark.parametrize("family", ["esm", "bert"])
def test_wild_type_marginals_are_one_unmasked_pass(lms, family):
    lm = lms[family]
    positions = list(range(1, len(WT) + 1))
    got = sc.site_log_probs(lm, WT, positions, "wt_marginal")
    for p in (2, 15, 33):
        assert np.allclose(got[p - 1], _by_hand(lm, WT, p - 1, masked=False), atol=1e-5)
    calls = []
    original = lm.site_log_probs
    lm.site_log_probs = lambda items, *a, **k: calls.append(len(items)) or original(items, *a, **k)
    try:
        sc.site_log_probs(lm, WT, positions, "wt_marginal")
    finally:
        lm.site_log_probs = original
    assert calls == [1]  # the whole scan from one sequence's pass


def test_windows_equal_the_full_pass_when_the_sequence_fits_and_the_window_otherwise(lms):
    lm = lms["esm"]
    positions = [1, 16, 33]
    full = sc.site_log_probs(lm, WT, positions, "masked_marginal")
    assert np.array_equal(full, sc.site_log_probs(lm, WT, positions, "masked_marginal", window=len(WT)))
    windowed = sc.site_log_probs(lm, WT, positions, "masked_marginal", window=10)
    for row, p in zip(windowed, positions, strict=True):
        start = sc._centred(len(WT), 10, p - 1)
        assert np.allclose(row, _by_hand(lm, WT[start:start + 10], p - 1 - start, masked=True), atol=1e-5)
    assert not np.allclose(windowed[1], full[1])  # the context really was cut
    wt_windows = sc.site_log_probs(lm, WT, positions, "wt_marginal", window=10)
    for row, p in zip(wt_windows, positions, strict=True):
        start = sc._most_central(len(WT), 10, p - 1)
        assert np.allclose(row, _by_hand(lm, WT[start:start + 10], p - 1 - start, masked=False), atol=1e-5)


def test_token_budget_batches_give_the_same_scores(lms):
    lm = lms["bert"]
    positions = list(range(1, 34))
    small = sc.marginal_matrix(lm, WT, positions, "masked_marginal", max_tokens=40)  # one copy a batch
    large = sc.marginal_matrix(lm, WT, positions, "masked_marginal", max_tokens=100_000)
    assert np.allclose(small, large, atol=1e-5)


def test_marginal_scores_of_multiple_mutants_add_up_and_pll_is_exact(lms):
    lm = lms["esm"]
    variants = [parse_variant(v) for v in ("K2R", "A4G", "K2R:A4G")]
    for scoring in ("masked_marginal", "wt_marginal"):
        s = sc.score_variants(lm, WT, variants, scoring)
        assert s[2] == pytest.approx(s[0] + s[1], abs=1e-9)
    seq = WT[:12]
    pll = sc.score_variants(lm, seq, [parse_variant("K2R:A4G")], "pll")[0]

    def pll_by_hand(s: str) -> float:
        return sum(_by_hand(lm, s, i, masked=True)[AMINO_ACIDS.index(s[i])] for i in range(len(s)))

    mutant = "M" + "R" + "T" + "G" + seq[4:]
    assert pll == pytest.approx(pll_by_hand(mutant) - pll_by_hand(seq), abs=1e-4)


def test_models_without_a_trained_lm_head_are_refused(tiny_models):
    with pytest.raises(ConfigError, match="no masked-language-model head"):
        load_masked_lm(str(tiny_models["t5"]))
    with pytest.raises(ConfigError, match="LM head .* missing"):
        load_masked_lm(str(tiny_models["esm"]))  # saved as a bare encoder: its head would be random


@pytest.mark.pretrained
def test_antiberty_scores_equal_its_lm_head_by_hand():
    lm = load_masked_lm("antiberty")
    heavy = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVSAISGSGGSTYYADSVKGRFTISRDNSKNTLYLQMNSLRAEDTAVYYCAK"
    positions = [1, 26, 50, 97]
    got = sc.marginal_matrix(lm, heavy, positions, "masked_marginal")
    for row, p in zip(got, positions, strict=True):
        lp = _by_hand(lm, heavy, p - 1, masked=True)
        assert np.allclose(row, lp - lp[AMINO_ACIDS.index(heavy[p - 1])], atol=1e-4)
    # a trained antibody model: the framework's conserved cysteine (C22) is strongly preferred
    c22 = sc.marginal_matrix(lm, heavy, [22], "masked_marginal")[0]
    assert (np.delete(c22, AMINO_ACIDS.index("C")) < -2).all()


# ---- ProteinGym's metrics -----------------------------------------------------------------------

def test_ndcg_and_top_recall_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0,
                  18.0, 20.0])
    perfect = y.copy()
    assert dms.ndcg(y, perfect) == pytest.approx(1.0)
    # k = 2: the score ranks variants 0 and 19 highest; gains 0 and 1 against the ideal 1 and 18/20
    s = np.zeros(20)
    s[0], s[19] = 2.0, 1.0
    ideal = 1.0 / np.log2(2) + 0.9 / np.log2(3)
    assert dms.ndcg(y, s) == pytest.approx((0.0 / np.log2(2) + 1.0 / np.log2(3)) / ideal)
    # top 10 %: the true top (y > 90th percentile) is {18, 20}; the model's top holds one of them
    s2 = np.zeros(20)
    s2[19], s2[5] = 5.0, 4.0
    assert dms.top_recall(y, s2) == pytest.approx(0.5)


def test_mcc_cuts_the_score_at_its_median_and_auc_reads_the_bins():
    bins = np.array([0, 0, 1, 1])
    assert dms.mcc_at_median(bins, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert dms.mcc_at_median(bins, np.array([0.4, 0.3, 0.2, 0.1])) == pytest.approx(-1.0)
    assert dms.auc(bins, np.array([0.1, 0.3, 0.2, 0.4])) == pytest.approx(0.75)
    report = dms.dms_report(np.arange(30.0), np.arange(30.0), (np.arange(30) >= 15).astype(int), resamples=200)
    assert report["metrics"]["spearman"] == pytest.approx(1.0)
    assert set(report["intervals"]) == set(dms.DMS_METRICS)


# ---- scans and variant files ---------------------------------------------------------------------

def test_a_scan_writes_its_table_top_heatmap_and_summary(lms, tmp_path):
    out = tmp_path / "scan"
    result = api.scan(lms["esm"], WT, positions="1-5,30", out=out, top=7, progress=False)
    table = pd.read_csv(out / "scan.csv")
    assert len(table) == 6 * 19 and list(table.columns) == ["mutant", "position", "wt", "mt", "score", "rank"]
    assert (np.diff(table["score"].to_numpy()) <= 0).all() and list(table["rank"]) == list(range(1, 115))
    assert table.loc[table["mutant"] == "K2R", "score"].item() == pytest.approx(
        sc.marginal_matrix(lms["esm"], WT, [2], "masked_marginal")[0][AMINO_ACIDS.index("R")], abs=1e-5)
    assert len(pd.read_csv(out / "top.csv")) == 7
    assert (out / "heatmap.png").stat().st_size > 5000 and not (out / "scan_progress.npz").exists()
    assert json.loads((out / "scan.json").read_text())["substitutions"] == 114
    assert "114 substitutions at 6 positions" in result.summary
    with pytest.raises(RunDirError, match="--overwrite"):
        api.scan(lms["esm"], WT, positions="1", out=out, progress=False)


def test_a_scan_never_writes_into_a_directory_it_did_not_make(lms, tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    called = []
    monkeypatch.setattr(sc, "marginal_matrix", lambda *a, **k: called.append(1))
    with pytest.raises(RunDirError, match="not a plmforge mutation scan"):
        api.scan(lms["esm"], WT, out=mine, overwrite=True, progress=False)
    assert not called and (mine / "notes.txt").read_text() == "keep me"


def test_an_interrupted_scan_resumes_to_the_same_result(lms, tmp_path, monkeypatch):
    whole = api.scan(lms["bert"], WT, positions="1-10", progress=False)
    monkeypatch.setattr(api, "CHUNK", 3)
    original = sc.marginal_matrix
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(sc, "marginal_matrix", flaky)
    out = tmp_path / "scan"
    with pytest.raises(KeyboardInterrupt):
        api.scan(lms["bert"], WT, positions="1-10", out=out, progress=False)
    assert (out / "scan_progress.npz").exists() and not (out / "scan.csv").exists()
    with pytest.raises(RunDirError, match="another model, sequence"):
        api.scan(lms["bert"], WT, positions="1-9", out=out, resume=True, progress=False)
    monkeypatch.setattr(sc, "marginal_matrix", original)
    resumed = api.scan(lms["bert"], WT, positions="1-10", out=out, resume=True, progress=False)
    assert np.allclose(resumed.matrix, whole.matrix, atol=1e-6)
    assert json.loads((out / "scan.json").read_text())["sites_computed"] == 4  # 6 were kept from before


def test_a_dms_file_is_scored_with_proteingyms_metrics(lms, tmp_path):
    rng = np.random.default_rng(0)
    muts = [f"{WT[p - 1]}{p}{a}" for p in range(1, 34, 3) for a in "ACDG" if a != WT[p - 1]]
    muts += ["M1A:K2R"]
    frame = pd.DataFrame({"mutant": muts, "DMS_score": rng.normal(size=len(muts))})
    frame["DMS_score_bin"] = (frame["DMS_score"] > 0).astype(int)
    frame["mutated_sequence"] = [api.apply(parse_variant(m), WT) for m in muts]
    src = tmp_path / "assay.csv"
    frame.to_csv(src, index=False)
    result = api.score(lms["esm"], str(src), WT, out=tmp_path / "scores.csv", resamples=100, progress=False)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores["mutant"]) == muts and {"score", "DMS_score", "DMS_score_bin"} <= set(scores.columns)
    report = json.loads((tmp_path / "scores_metrics.json").read_text())
    assert report["metrics"]["spearman"] == pytest.approx(dms.spearman(frame["DMS_score"].to_numpy(),
                                                                       scores["score"].to_numpy()))
    assert set(report["metrics"]) == set(dms.DMS_METRICS) and (tmp_path / "scores_scatter.png").is_file()
    assert result.report is not None and "spearman" in result.summary
    wrong = frame.copy()
    wrong.loc[3, "mutant"] = "W4A"
    wrong.to_csv(tmp_path / "wrong.csv", index=False)
    with pytest.raises(DataError, match="row 5") as err:
        api.score(lms["esm"], str(tmp_path / "wrong.csv"), WT, progress=False)
    assert "W4A" in str(err.value)
    with pytest.raises(RunDirError, match="exists"):
        api.score(lms["esm"], str(src), WT, out=tmp_path / "scores.csv", progress=False)


def test_variants_given_inline(lms):
    result = api.score(lms["bert"], "K2R,A4G:K2R", WT, scoring="wt_marginal", progress=False)
    assert list(result.table["mutant"]) == ["K2R", "K2R:A4G"]
    assert result.table["score"][1] == pytest.approx(
        result.table["score"][0] + api.score(lms["bert"], "A4G", WT, scoring="wt_marginal",
                                              progress=False).table["score"][0], abs=1e-9)


def test_the_cli_scans_and_scores(mlm_dirs, tmp_path, capsys):
    from plmforge.cli import main

    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt my protein\n" + WT[:20] + "\n" + WT[20:] + "\n")
    rc = main(["mutate", "scan", "--model", str(mlm_dirs["esm"]), "--fasta", str(fasta), "--positions", "3-4",
               "--out", str(tmp_path / "s"), "--no-progress"])
    assert rc == 0 and "38 substitutions at 2 positions" in capsys.readouterr().out
    rc = main(["mutate", "score", "--model", str(mlm_dirs["esm"]), "--sequence", WT, "--mutations", "K2X",
               "--no-progress"])
    assert rc != 0 and "20 amino acids" in capsys.readouterr().err


def test_low_precision_follows_the_hardware_rule(mlm_dirs, lms, tmp_path, monkeypatch):
    from plmforge import precision
    from plmforge.precision import ASSUME_ENV

    precision.reset()
    try:
        monkeypatch.setenv(ASSUME_ENV, "0")  # as on a CPU that only emulates bf16
        with pytest.raises(ConfigError, match="--precision fp32"):
            api.scan(str(mlm_dirs["esm"]), WT, positions="1", out=tmp_path / "s", precision="bf16", progress=False)
        assert not (tmp_path / "s").exists()  # refused before anything was written
        precision.reset()
        monkeypatch.setenv(ASSUME_ENV, "1")  # a device with native bf16: the scan runs in it
        low = api.scan(str(mlm_dirs["esm"]), WT, positions="1-4", precision="bf16", progress=False)
    finally:
        precision.reset()
    full = api.scan(lms["esm"], WT, positions="1-4", progress=False)
    assert not np.array_equal(low.matrix, full.matrix)  # really computed in bf16 ...
    assert np.allclose(low.matrix, full.matrix, atol=0.1)  # ... and close to float32


# ---- ensembles ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def esm_members(tiny_models, tmp_path_factory):
    """Three tiny ESM masked LMs with one tokenizer and different random weights."""
    from transformers import AutoConfig, EsmForMaskedLM

    root = tmp_path_factory.mktemp("members")
    out = []
    for seed in (11, 12, 13):
        torch.manual_seed(seed)
        d = root / f"m{seed}"
        shutil.copytree(tiny_models["esm"], d)
        for f in d.glob("model*.safetensors"):
            f.unlink()
        EsmForMaskedLM(AutoConfig.from_pretrained(d)).save_pretrained(d)
        out.append(str(d))
    return out


@pytest.mark.parametrize("scoring", ["masked_marginal", "wt_marginal", "pll"])
def test_an_ensemble_scores_the_mean_of_its_members(esm_members, scoring):
    """Models joined by commas (as `esm1v` joins ESM-1v's five) score every variant with the mean of the
    members' own scores: scans and multi-mutant scores."""
    from plmforge.mutate.lm import MaskedLMEnsemble, load_scorer

    ensemble = load_scorer(",".join(esm_members))
    assert isinstance(ensemble, MaskedLMEnsemble) and len(ensemble.members) == 3
    alone = [load_masked_lm(m) for m in esm_members]
    positions = "2-4" if scoring == "pll" else "1-12"
    together = api.scan(ensemble, WT, positions=positions, scoring=scoring, progress=False).matrix
    each = [api.scan(lm, WT, positions=positions, scoring=scoring, progress=False).matrix for lm in alone]
    tol = 1e-4 if scoring == "pll" else 1e-6  # (a pll is a sum of a sequence's float32 log-probabilities)
    np.testing.assert_allclose(together, np.mean(each, axis=0), rtol=1e-5, atol=tol)
    assert not np.allclose(each[0], each[1])  # the members really differ
    variants = "K2R,K2R:A4G"
    mine = api.score(ensemble, variants, WT, scoring=scoring, progress=False).table["score"].to_numpy()
    theirs = np.mean([api.score(lm, variants, WT, scoring=scoring, progress=False).table["score"].to_numpy()
                      for lm in alone], axis=0)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=tol)


def test_esm1v_names_its_five_models_and_members_must_share_a_vocabulary(mlm_dirs, monkeypatch):
    from plmforge.mutate import lm as lm_module

    asked = []
    monkeypatch.setattr(lm_module, "load_masked_lm", lambda name, *a, **k: asked.append(name) or
                        load_masked_lm(str(mlm_dirs["esm"])))
    ensemble = lm_module.load_scorer("esm1v")
    assert asked == [f"esm1v_t33_650M_UR90S_{i}" for i in range(1, 6)] and ensemble.name == "esm1v"
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="do not share one vocabulary"):
        lm_module.load_scorer(f"{mlm_dirs['esm']},{mlm_dirs['bert']}")


# ---- benchmark over assays ----------------------------------------------------------------------

def _assay(wt: str, seed: int, path, multiple: bool = False):
    rng = np.random.default_rng(seed)
    muts = [f"{wt[p - 1]}{p}{a}" for p in range(1, len(wt) + 1, 2) for a in "ACDGW" if a != wt[p - 1]]
    if multiple:
        muts.append(f"{wt[0]}1A:{wt[2]}3G" if wt[0] != "A" and wt[2] != "G" else f"{wt[0]}1W")
    frame = pd.DataFrame({"mutant": muts, "mutated_sequence": [api.apply(parse_variant(m), wt) for m in muts],
                          "DMS_score": rng.normal(size=len(muts))})
    frame["DMS_score_bin"] = (frame["DMS_score"] > frame["DMS_score"].median()).astype(int)
    frame.to_csv(path, index=False)
    return frame


def test_a_benchmark_scores_every_assay_and_averages_proteingyms_metrics(lms, tmp_path, capsys):
    """Two small assays of two wild types: per-assay metrics equal mutate score's on the same file, averages
    are their means, ProteinGym's per-metric tables are written, --resume keeps scored assays, and a reference
    file names the assays and their selection types."""
    from plmforge.cli import main
    from plmforge.mutate.benchmark import benchmark

    folder = tmp_path / "DMS_ProteinGym_substitutions"
    folder.mkdir()
    other = "MSEQNNTEMTFQIQRIYTKDISFEAPNAPHVFQK"
    _assay(WT, 0, folder / "A_TEST.csv", multiple=True)
    _assay(other, 1, folder / "B_TEST.csv")
    result = benchmark(lms["esm"], folder, tmp_path / "bench", progress=False)
    table = result.by_assay.set_index("DMS_id")
    for name, wt in (("A_TEST", WT), ("B_TEST", other)):
        alone = api.score(lms["esm"], str(folder / f"{name}.csv"), wt, resamples=0, progress=False).report
        for k, v in alone["metrics"].items():
            assert table.loc[name, k] == pytest.approx(v)
    assert result.summary["average"]["spearman"] == pytest.approx(table["spearman"].mean())
    spearman = pd.read_csv(tmp_path / "bench" / "Spearman_DMS_level.csv")
    assert list(spearman.columns) == ["DMS_id", lms["esm"].name] and len(spearman) == 2
    assert {"metrics_by_assay.csv", "summary.json", "summary.csv", "NDCG_DMS_level.csv"} <= \
        {p.name for p in (tmp_path / "bench").iterdir()}
    # resume keeps what was scored (the file is read back, not recomputed)
    kept = tmp_path / "bench" / "scores" / "A_TEST.csv"
    edited = pd.read_csv(kept)
    edited["score"] = -edited["score"]
    edited.to_csv(kept, index=False)
    again = benchmark(lms["esm"], folder, tmp_path / "bench", resume=True, progress=False)
    assert again.by_assay.set_index("DMS_id").loc["A_TEST", "spearman"] == pytest.approx(-table.loc["A_TEST", "spearman"])
    with pytest.raises(RunDirError, match="exists|not empty|--overwrite"):
        benchmark(lms["esm"], folder, tmp_path / "bench", progress=False)
    # a reference file: assays by DMS_id with their wild type and selection type
    pd.DataFrame({"DMS_id": ["A", "B"], "DMS_filename": ["A_TEST.csv", "B_TEST.csv"], "target_seq": [WT, other],
                  "coarse_selection_type": ["Activity", "Stability"]}).to_csv(tmp_path / "DMS_substitutions.csv",
                                                                               index=False)
    rc = main(["mutate", "benchmark", "--model", str(lms["esm"].name), "--proteingym", str(tmp_path),
               "--out", str(tmp_path / "bench2"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "on 2 assays: average spearman" in out
    summary = json.loads((tmp_path / "bench2" / "summary.json").read_text())
    assert set(summary["by_selection_type"]) == {"Activity", "Stability"} and summary["assays"] == 2


def test_a_benchmark_refuses_an_assay_whose_wild_type_does_not_match(lms, tmp_path):
    from plmforge.mutate.benchmark import benchmark

    folder = tmp_path / "assays"
    folder.mkdir()
    frame = _assay(WT, 0, folder / "A.csv")
    frame.loc[6, "mutated_sequence"] = "W" + frame.loc[6, "mutated_sequence"][1:]  # T3A with M1W as well
    frame.to_csv(folder / "A.csv", index=False)
    with pytest.raises(DataError, match="row 8"):
        benchmark(lms["esm"], folder, tmp_path / "out", progress=False)
