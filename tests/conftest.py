"""Shared fixtures: tiny random ESM, BERT and T5-encoder backbones saved to disk (loaded through the
real loading path), and paths to the real datasets in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... under `pytest -n N`
if XDIST_WORKER:
    # N workers on N cores: one intra-op thread each (more only fight over the cores); set before torch
    # is imported, and inherited by the subprocesses the tests start
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"


def _test_dir(var: str, prefix: str) -> None:
    """The tests' own directory in `var`: never the user's; under xdist one per worker (the controller's
    directory, inherited by every worker, would otherwise be shared)."""
    import tempfile

    if var not in os.environ:
        os.environ[var] = tempfile.mkdtemp(prefix=prefix)
    if XDIST_WORKER:  # the subprocesses a test starts inherit their worker's directory
        os.environ[var] = os.path.join(os.environ[var], XDIST_WORKER)
        os.makedirs(os.environ[var], exist_ok=True)


_test_dir("PLMFORGE_CACHE_DIR", "plmforge-store-")  # the embedding store
_test_dir("PLMFORGE_DATA_DIR", "plmforge-ondisk-")  # splits kept on disk (data.storage) while a test trains
if XDIST_WORKER:
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESIDUES = "LAGVESIKRDTPNQFYMHCWXUBZO"


# Under xdist (scripts/test.sh: `-n 2 --dist loadfile --no-loadscope-reorder`) whole files go to the workers
# in collection order, each to the first worker that is free: the longest files go first, so the last to
# start are short ones and both workers end at about the same time. Measured with one torch thread per
# worker, longest first; the other files keep their order after these.
LONGEST_FIRST = ("tests/test_ptm.py", "tests/test_crash.py", "tests/test_ui_browser.py", "tests/test_ondisk.py",
                 "tests/test_instruct.py", "tests/test_ses_adapter.py", "tests/test_ui_tutorial.py",
                 "tests/e2e/test_lora_antiberty.py",
                 "tests/e2e/test_quickstart.py", "tests/e2e/test_secondary_structure.py", "tests/test_peft.py",
                 "tests/test_structure.py", "tests/e2e/test_paratope_antiberty.py", "tests/test_training.py",
                 "tests/test_embed.py", "tests/test_stream.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if XDIST_WORKER:  # a serial run keeps pytest's order
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: files stay whole


_RUNNING: dict[str, pytest.Item] = {}


@pytest.fixture(autouse=True)
def _running_test(request: pytest.FixtureRequest):
    _RUNNING["item"] = request.node
    yield
    _RUNNING.pop("item", None)


class StopTraining(Exception):
    """Raised by `stop_after_epoch` to interrupt a run as a kill would."""


def stop_after_epoch(index: int):  # type: ignore[no-untyped-def]
    """A training callback that interrupts the run once epoch `index` (0-based) has been saved."""
    def stop(epoch, trainer):  # type: ignore[no-untyped-def]
        if epoch == index:
            raise StopTraining

    return stop


def free_port() -> int:
    """A free loopback port for a test's server or process group (never a fixed number: tests run
    side by side under xdist)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared(*parts: str) -> Path:
    """A path in ../shared/data; the calling test must carry the shared_data marker (so that
    `pytest -m "not shared_data"` really runs without the shared data)."""
    item = _RUNNING.get("item")
    if item is not None and item.get_closest_marker("shared_data") is None:
        raise AssertionError(f"{item.nodeid} reads ../shared/data: mark it @pytest.mark.shared_data")
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the tests read real data from ../shared/data")
    return path


def make_esm(directory: Path) -> Path:
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *RESIDUES, ".", "-", "<null_1>", "<mask>"]
    (directory / "vocab.txt").write_text("\n".join(vocab))
    tok = EsmTokenizer(str(directory / "vocab.txt"))
    # hidden sizes of 64: bitsandbytes' CPU 4-bit path needs input widths of at least its block size (64)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=130, pad_token_id=1, mask_token_id=len(vocab) - 1,
                    position_embedding_type="absolute", token_dropout=False)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def make_bert(directory: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *RESIDUES]
    (directory / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizer(str(directory / "vocab.txt"), do_lower_case=False)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=128)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def make_t5(directory: Path) -> Path:
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + a, -1.0) for a in RESIDUES]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    cfg = T5Config(vocab_size=len(vocab), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


BUILDERS = {"esm": make_esm, "bert": make_bert, "t5": make_t5}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("tiny_models")
    out = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)  # the same random backbones whichever test asks first
        out[name] = build(root / name)
    return out


@pytest.fixture(scope="session")
def amp_dir() -> Path:
    return REPO / "examples" / "data" / "amp"


@pytest.fixture(scope="session")
def amp_small(tmp_path_factory: pytest.TempPathFactory, amp_dir: Path) -> Path:
    """A small stratified subset of the bundled AMP example (real peptides), as a split directory."""
    import pandas as pd

    out = tmp_path_factory.mktemp("amp_small")
    for split, n in (("train", 96), ("validation", 32), ("test", 32)):
        df = pd.read_csv(amp_dir / f"{split}.csv")
        df = df.groupby("label").head(n // 2)
        df.to_csv(out / f"{split}.csv", index=False)
    return out


@pytest.fixture(scope="session")
def structures():  # type: ignore[no-untyped-def]
    """Every chain of the 48 real structure files in ../shared/data/structures with its 3Di and 8-state DSSP
    strings (2 worker processes, mkdssp): a StructureResult, computed once for test_structure.py and
    test_ses_adapter.py (about half a minute). Use `.table()` for a DataFrame of your own."""
    from plmforge.structure.build import structure_tokens
    from plmforge.structure.tokens import mkdssp_path

    if mkdssp_path() is None:
        pytest.fail("mkdssp is not installed: run `bash scripts/system.sh` (installs Debian's dssp package)")
    return structure_tokens([shared("structures", "files")], workers=2, progress=False)


WORDS = ("which residues bind the antigen where is the longest paratope segment what kind of fragment is this "
         "describe a residue framework rich in starting with protein assistant user system").split()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA decoder with a byte-level BPE tokenizer and a chat template, built here (no download)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS)] * 5 + ["[12, 19); [40, 47)", "0123456789 ,;[)"] * 5 + ["ACDEFGHIKLMNPQRSTVWY"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant: {% endif %}")
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d
