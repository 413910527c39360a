"""Scale-out recipes: accelerate accepts every config file in recipes/accelerate/, FSDP's transformer wrap
policy finds the backbone's layer classes through the task model for every family and method, and
checkpoints written from gathered (sharded-engine) weights hold the same tensors as the model's own."""

from pathlib import Path

import pytest
import torch
from conftest import free_port

from plmforge.config import load_config
from plmforge.models.backbone import load_backbone
from plmforge.models.build import build_model
from plmforge.tasks import TaskSpec

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_reads_every_recipe(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert cfg.mixed_precision == "bf16"
    if cfg.distributed_type.value == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if cfg.distributed_type.value == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3
        assert cfg.deepspeed_config["zero3_save_16bit_model"] is True  # plmforge gathers whole weights to save


def _model(tiny_models, family, method):
    cfg = load_config(None, [f"model.name={tiny_models[family]}", f"method.name={method}", "data.dataset=amp"])
    task = TaskSpec("single_label_classification", 2, "none", ("accuracy",), "accuracy", "max")
    return build_model(cfg, load_backbone(cfg.model), task)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("family,layer", [("esm", "EsmLayer"), ("bert", "BertLayer"), ("t5", "T5Block")])
def test_fsdp_wraps_the_backbone_layers_of_every_family(tiny_models, family, layer, method):
    from accelerate.utils.dataclasses import get_module_class_from_name

    model = _model(tiny_models, family, method)
    names = model._no_split_modules
    assert layer in names
    for name in names:  # accelerate raises for a listed class the model does not have
        assert get_module_class_from_name(model, name) is not None
    wrapped = [m for m in model.modules() if type(m).__name__ == layer]
    assert len(wrapped) == 2  # the tiny backbones have 2 layers: each becomes its own FSDP unit


def test_checkpoint_from_gathered_weights_equals_the_plain_one(tmp_path, tiny_models):
    """Under FSDP/ZeRO-3 the weights come from accelerator.get_state_dict (full tensors gathered from the
    shards); the checkpoint and its peft adapter must equal what the unsharded model writes."""
    from safetensors.torch import load_file

    from plmforge import checkpoint as ckpt
    from plmforge.methods import METHODS

    model = _model(tiny_models, "esm", "lora")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.01)
    gathered = {k: v.clone() for k, v in model.state_dict().items()}
    spec = METHODS["lora"]
    ckpt.save_checkpoint(tmp_path / "plain", model, {"epoch": 0}, spec=spec)
    ckpt.save_checkpoint(tmp_path / "gathered", model, {"epoch": 0}, spec=spec, weights=gathered)
    for rel in (ckpt.WEIGHTS, f"{ckpt.ADAPTER_DIR}/adapter_model.safetensors"):
        a, b = load_file(str(tmp_path / "plain" / rel)), load_file(str(tmp_path / "gathered" / rel))
        assert a.keys() == b.keys() and a
        assert all(torch.equal(a[k], b[k]) for k in a)


FSDP2_SCRIPT = r'''
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from plmforge import checkpoint as ckpt
from plmforge.config import load_config
from plmforge.methods import METHODS, trainable_state_dict
from plmforge.models.backbone import load_backbone
from plmforge.models.build import build_model
from plmforge.tasks import TaskSpec

model_dir, out = sys.argv[1], Path(sys.argv[2])
dist.init_process_group("gloo")
rank = dist.get_rank()


def make():
    torch.manual_seed(0)
    cfg = load_config(None, [f"model.name={model_dir}", "method.name=lora", "data.dataset=amp"])
    task = TaskSpec("single_label_classification", 2, "none", ("accuracy",), "accuracy", "max")
    return build_model(cfg, load_backbone(cfg.model), task)


plain, sharded = make(), make()
with torch.no_grad():  # "trained" weights: adapters and head moved away from their initial values
    for n, p in plain.named_parameters():
        if p.requires_grad:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
if rank == 0:
    ckpt.save_checkpoint(out / "best", plain, {"epoch": 0}, spec=METHODS["lora"])
dist.barrier()
layers = set(sharded._no_split_modules)
for module in list(sharded.modules()):
    if type(module).__name__ in layers:
        fully_shard(module)
fully_shard(sharded)
assert any(type(p).__name__ == "DTensor" for p in sharded.parameters())
ckpt.load_weights(out / "best", sharded, "fsdp")  # what a sharded run does before its test evaluation
ids = torch.tensor([[0, 5, 6, 7, 8, 9, 2]])
mask = torch.ones_like(ids)
residue = mask.bool().clone()
residue[:, 0] = residue[:, -1] = False
plain.eval(), sharded.eval()
with torch.no_grad():
    a = plain(residue_mask=residue, inputs={"input_ids": ids}, attention_mask=mask).logits
    b = sharded(residue_mask=residue, inputs={"input_ids": ids}, attention_mask=mask).logits
gathered = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
if rank == 0:  # the gathered weights save to the same checkpoint as the unsharded model's
    ckpt.save_checkpoint(out / "gathered", sharded, {"epoch": 0}, weights=gathered)
    same = trainable_state_dict(plain).keys() == trainable_state_dict(plain, gathered).keys()
    (out / "result.txt").write_text(f"{torch.allclose(a, b, atol=1e-5)} {same}")
dist.barrier()
dist.destroy_process_group()
'''


def test_sharded_fsdp2_model_loads_and_gathers_checkpoints(tmp_path, tiny_models):
    """PyTorch FSDP2 runs on CPU with gloo: shard the task model by its layer classes across 2 processes,
    load a checkpoint into the shards (as a sharded run does before testing) and gather it back."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    script = tmp_path / "fsdp2_check.py"
    script.write_text(FSDP2_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(script), str(tiny_models["esm"]), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "result.txt").read_text() == "True True"  # same logits, same checkpoint keys
    a, b = load_file(str(tmp_path / "best" / "model.safetensors")), load_file(
        str(tmp_path / "gathered" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k]) for k in a)


@pytest.mark.parametrize("path", sorted((RECIPES.parent / "ptm").glob("*.yaml")), ids=lambda p: p.name)
def test_ptm_recipes_load_state_their_size_and_their_commands_parse(path):
    """A PTM-Mamba recipe is a valid config, the parameter count its header states is the model it builds
    (ESM-2 650M's 1,280-wide states fused), and the commands in its header parse."""
    import re
    import shlex

    from plmforge.cli import build_parser
    from plmforge.ptm.mamba import PtmMamba
    from plmforge.ptm.tokens import PtmTokenizer
    from plmforge.ptm.train import load_ptm_config

    cfg = load_ptm_config(path)
    assert cfg.training.use_esm and cfg.training.esm_model == "esm2_t33_650M_UR50D"
    header = "\n".join(line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
    tok = PtmTokenizer.with_extra(cfg.model.extra_ptms())
    with torch.device("meta"):
        model = PtmMamba(len(tok), cfg.model.d_model, cfg.model.n_layers, cfg.model.d_state, 1280)
    stated = int(re.search(r"(\d+)M parameters", header)[1])
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == stated
    commands = [c for c in re.sub(r"\\\n\s*", " ", header).splitlines() if "ptm " in c and "plmforge" in c]
    assert len(commands) >= 3
    parser = build_parser()
    for line in commands:
        words = shlex.split(line.split(":", 1)[-1] if line.startswith("One GPU") else line)
        words = words[words.index("plmforge.cli") + 1:] if "plmforge.cli" in words else \
            words[words.index("plmforge") + 1:]
        _, extra = parser.parse_known_args(words)
        assert all("=" in e and not e.startswith("-") for e in extra), (line, extra)  # overrides only
