"""Command line of the machine check and the help texts: `plmforge doctor`, `plmforge --version`, the
example line every command's --help ends with (EXAMPLES, by command path; tests check that none is missing),
and the --precision options the inference commands share."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES = {
    "train": "plmforge train -c examples/quickstart.yaml training.epochs=3 --output runs/amp",
    "evaluate": "plmforge evaluate runs/amp --data my_labelled.csv",
    "predict": "plmforge predict runs/amp --input peptides.fasta --output predictions.csv",
    "export": "plmforge export runs/lora_run --merge merged_model/",
    "sweep": "plmforge sweep -c examples/quickstart.yaml --space space.yaml --trials 20 --out sweeps/amp",
    "push": "plmforge push runs/amp --repo my-lab/amp-classifier --dry-run",
    "embed": "plmforge embed --model antiberty --input peptides.fasta --out embeddings.h5",
    "structure": "plmforge structure pdb_files/ --out structure_tokens.csv",
    "instruct train": "plmforge instruct train --config my_instruct.yaml training.num_train_epochs=2",
    "instruct generate": "plmforge instruct generate runs/instruct --sequence MKTAYIAKQR --question "
                         "'What does this protein do?'",
    "ptm train": "plmforge ptm train --config ptm.yaml",
    "ptm embed": "plmforge ptm embed --config ptm.yaml",
    "models": "plmforge models",
    "methods": "plmforge methods",
    "data check": "plmforge data check my_data.csv --problem-type regression",
    "data list": "plmforge data list",
    "cache info": "plmforge cache info",
    "cache clear": "plmforge cache clear --model antiberty",
    "ui": "plmforge ui --runs-dir runs",
    "doctor": "plmforge doctor",
}


def precision_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 autocast (checked against fp32), faster where the device runs bfloat16 "
                        "natively (GPUs from compute capability 8.0, CPUs with AVX512-BF16 or AMX); refused "
                        "where it is emulated")
    p.add_argument("--force-precision", action="store_true",
                   help="keep --precision bf16 on a device that only emulates bfloat16 (many times slower)")


def check_precision_args(args: argparse.Namespace) -> None:
    """Refuse --precision bf16 where the device only emulates it, before any model is loaded."""
    from plmforge.precision import check_precision, default_device

    check_precision(args.precision, default_device(), args.force_precision, f"--precision {args.precision}",
                    fix="--precision fp32", keep="add --force-precision")


def tools_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine can do for plmforge and what is missing, with the fix for each",
                       description="Reports Python, the torch build and devices (CUDA, MPS, the CPU and whether it "
                       "runs bfloat16 natively), memory and disk, plmforge's required packages, the offline model, "
                       "optional parts (web UI, QLoRA, DSSP, browser, Mamba kernels, DeepSpeed, tracking), the hub "
                       "and its cache, and the embedding store. Exit code 0 when the core works.")
    p.add_argument("--offline", action="store_true", help="do not try to reach huggingface.co")
    p.set_defaults(func=_doctor)


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                          argparse.ArgumentParser]]:
    """Every command of the tree (a parser without subcommands) with its path, e.g. (("mutate", "scan"), p)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Every command's --help ends with its example line (a command's own epilog is kept)."""
    for path, command in commands(parser):
        example = EXAMPLES.get(" ".join(path))
        if command.epilog is None and example is not None:
            command.epilog = f"example: {example}"


def light_main(argv: list[str]) -> int:
    """`plmforge doctor` and `plmforge --version` on a parser of their own: they must run where torch (which
    the full parser's choices import) does not load."""
    parser = argparse.ArgumentParser(prog="plmforge")
    parser.add_argument("--version", action=VersionAction)
    tools_parsers(parser.add_subparsers(dest="command", required=True))
    add_examples(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def _doctor(args: argparse.Namespace) -> int:
    from plmforge.doctor import core_works, diagnose, render

    rows = diagnose(offline=args.offline)
    print(render(rows))
    return 0 if core_works(rows) else 1


class VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print plmforge's version (and torch's, transformers', "
                         "peft's, accelerate's) and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from plmforge.doctor import version_line

        print(version_line())
        parser.exit()
