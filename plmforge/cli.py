"""Command line: parses arguments, builds configs, calls one function per command; the only place
that prints results. Choices and help come from the registries (methods, heads, problem types, zoo)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plmforge.cli_mutate import mutate_parsers
from plmforge.cli_research import research_parsers
from plmforge.cli_store import MODEL_HELP, catalogue_parsers, file_parsers
from plmforge.cli_tools import (VersionAction, add_examples, check_precision_args, precision_args,
                                 tools_parsers)
from plmforge.errors import ConfigError, PlmforgeError

# CLI flags that are shorthands for config keys (everything else: section.key=value)
FLAG_KEYS = {
    "dataset": "data.dataset", "train_file": "data.train", "validation_file": "data.validation",
    "test_file": "data.test", "problem_type": "data.problem_type", "num_labels": "data.num_labels",
    "model": "model.name", "method": "method.name", "pooling": "head.pooling", "epochs": "training.epochs",
    "lr": "training.learning_rate", "batch_size": "batching.batch_size", "max_tokens": "batching.max_tokens",
    "seed": "training.seed", "output": "output.dir", "cv": "cv.folds",
}

WHAT = {"dataset": "a catalogue name (`plmforge data list`), a file, a directory or a hub id",
        "model": MODEL_HELP,
        "cv": "K-fold cross-validation: K runs, each validating on one fold; mean +- sd over folds and the fold "
              "models' ensemble on the test split"}


def _choices() -> dict[str, list[str]]:
    from plmforge.heads import HEADS
    from plmforge.methods import METHODS
    from plmforge.tasks import PROBLEM_TYPES

    return {"method": list(METHODS), "pooling": list(HEADS), "problem_type": list(PROBLEM_TYPES)}


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a model (config file and/or section.key=value overrides)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. training.epochs=5")
    p.add_argument("--config", "-c", help="YAML config file")
    choices = _choices()
    for flag, key in FLAG_KEYS.items():
        allowed = choices.get(flag)
        more = f"; one of {', '.join(allowed)}" if allowed else (f": {WHAT[flag]}" if flag in WHAT else "")
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, choices=allowed, metavar=flag.upper(),
                       help=f"shorthand for {key}{more}")
    p.add_argument("--few-shot", metavar="SIZES", help="a low-N learning curve: train on random subsets of these "
                   "sizes, e.g. 24,48,96,192 (each --repeats times); the test metric's mean +- sd per size and a plot")
    p.add_argument("--repeats", type=int, default=5, help="runs per --few-shot size, each on its own random subset "
                   "(default 5)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and the equivalent command")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from RUN_DIR/last")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--force-precision", action="store_true",
                   help="keep training.mixed_precision=bf16 on a device that only emulates bfloat16 (e.g. a CPU "
                        "without AVX512-BF16/AMX: many times slower; refused there otherwise); sets "
                        "training.force_precision=true")
    _trust_arg(p)
    p.set_defaults(func=_train)


def _sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="hyperparameter search with Optuna (TPE, median pruning): every trial a run",
                       description="Run --trials runs of a base config with values proposed by Optuna's TPE sampler "
                       "from a space file, judged by the best validation value of the monitored metric. The space "
                       "file maps config keys to {low: A, high: B} (whole numbers when both are; log: true; step: S) "
                       "or to a list of choices. Writes trial_NNN/ runs, sweep_trials.csv, plots/sweep.png and "
                       "best_config.yaml.")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="on top of the base config")
    p.add_argument("--config", "-c", help="the base YAML config")
    p.add_argument("--space", help="YAML file: what to try for each config key")
    p.add_argument("--trials", type=int, default=20, help="number of trials (default 20)")
    p.add_argument("--out", help="sweep directory (default: the base config's output.dir)")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its end (no median pruning)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue a sweep up to --trials trials")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep directory")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from plmforge.config import load_config
    from plmforge.sweep import read_space, sweep

    if args.resume:
        sweep(None, None, args.trials, args.resume, resume=True, progress=False)
        return 0
    if not args.space:
        raise ConfigError("plmforge sweep needs --space FILE (config keys -> ranges or lists)")
    overrides = list(args.overrides) + (["output.overwrite=true"] if args.overwrite else [])
    base = load_config(args.config, overrides)
    sweep(base, read_space(args.space), args.trials, args.out, prune=not args.no_prune, progress=False)
    return 0


def _push(args: argparse.Namespace) -> int:
    from plmforge.share import push

    result = push(args.run_dir, args.repo, private=args.private, dry_run=args.dry_run, out=args.out)
    if args.dry_run:
        print(f"dry run: {len(result.files)} files written to {result.folder} (nothing uploaded); the model card is "
              f"{result.folder / 'README.md'}")
    else:
        print(f"pushed {len(result.files)} files to {result.url}")
    return 0


def _inference_args(p: argparse.ArgumentParser, flag: str, chunks: str) -> None:
    """Batching and precision, and --stream/--no-stream for the file given by `flag`."""
    stream = p.add_mutually_exclusive_group()
    stream.add_argument("--stream", dest="stream", action="store_true", default=None,
                        help=f"read {flag} in chunks of rows {chunks} (the default from 64 MB on)")
    stream.add_argument("--no-stream", dest="stream", action="store_false", help=f"read {flag} whole")
    p.add_argument("--batch-size", type=int, help="batches of this many sequences (default: the run's batching)")
    p.add_argument("--max-tokens", type=int, help="length-sorted batches within this token budget (default: the "
                                                  "run's batching)")
    precision_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plmforge", description="Fine-tune protein language models.")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    p = sub.add_parser("evaluate", help="evaluate a trained run on a labelled dataset")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="a labelled file, or a directory with a test (or train) file")
    p.add_argument("--output", help="directory for the metrics files (default RUN_DIR/eval_<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier evaluation there")
    _inference_args(p, "--data", "onto disk")
    _column_args(p, ("sequence", "label", "id"))
    _trust_arg(p)
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("predict", help="predict with a trained run (several runs of one task: their mean)")
    p.add_argument("run_dir", nargs="+", help="a run directory; more than one predict as an ensemble (the mean of "
                                             "their probabilities or values)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--input", help="CSV, TSV, JSONL, Parquet or FASTA file of sequences")
    group.add_argument("--sequence", help="one amino-acid sequence")
    p.add_argument("--output", help="CSV to write (default RUN_DIR/predictions.csv for --input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _inference_args(p, "--input", "and append the predictions")
    _column_args(p, ("sequence", "id"))
    _trust_arg(p)
    p.set_defaults(func=_predict)
    p = sub.add_parser("export", help="write a self-contained model directory (adapters merged)")
    _trust_arg(p)
    p.add_argument("run_dir")
    p.add_argument("--merge", required=True, metavar="OUT_DIR", help="directory to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_export)
    _sweep_parser(sub)
    p = sub.add_parser("push", help="upload a finished run to the HuggingFace Hub, with a generated model card",
                       description="Uploads the trained weights (adapter, head or model), task, tokenizer, threshold, "
                       "test metrics, baselines, plots, the command and a model card (README.md). The backbone is "
                       "named, not uploaded. Needs a token with write access (`hf auth login` or HF_TOKEN).")
    p.add_argument("run_dir")
    p.add_argument("--repo", required=True, help="owner/name of the model repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--dry-run", action="store_true", help="write the folder that would be uploaded; upload nothing")
    p.add_argument("--out", help="with --dry-run: the folder to write (default RUN_DIR/hub_upload)")
    p.set_defaults(func=_push)
    file_parsers(sub)
    research_parsers(sub)
    mutate_parsers(sub)
    catalogue_parsers(sub)
    ui = sub.add_parser("ui", help="the web UI: train, follow, evaluate and predict from a browser")
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    ui.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    ui.add_argument("--runs-dir", default="runs", help="where runs are written and listed (default runs/)")
    ui.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this login (needed when not on loopback)")
    ui.add_argument("--work-dir", default=".plmforge-ui", help="uploads, logs and evaluation outputs")
    ui.add_argument("--max-upload-mb", type=int, default=200, help="largest file a user may upload")
    ui.add_argument("--max-concurrent-runs", type=int, metavar="N", help="runs training at once; the others wait in "
                    "a queue (default: 1 per GPU, 1 on a CPU)")
    ui.set_defaults(func=_ui)
    tools_parsers(sub)
    add_examples(parser)
    return parser


def _ui(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ConfigError("plmforge ui needs gradio: pip install 'plmforge[ui]'")
    from plmforge.ui.app import launch

    launch(args.host, args.port, args.runs_dir, args.auth, args.work_dir, args.max_upload_mb,
           max_concurrent_runs=args.max_concurrent_runs)
    return 0


def _train(args: argparse.Namespace) -> int:
    import signal

    def stop(signum: int, frame: object) -> None:  # `kill`, or the web UI's Abort: stop like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # before the slow imports below
    from plmforge.config import load_config, save_config  # noqa: I001
    from plmforge.train.run import preview_command, train
    from plmforge.cv import cross_validate, is_cv_run
    from plmforge.fewshot import few_shot, is_few_shot_run, parse_sizes
    if args.resume:
        from plmforge.precision import FORCE_PRECISION

        token = FORCE_PRECISION.set(True) if args.force_precision else None  # the run's saved config stays as is
        try:
            if is_cv_run(args.resume):
                cross_validate(run_dir=args.resume, resume=True)
            elif is_few_shot_run(args.resume):
                few_shot(None, out_dir=args.resume, resume=True)
            else:
                train(run_dir=args.resume, resume=True)
        finally:
            if token is not None:
                FORCE_PRECISION.reset(token)
        return 0
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items() if getattr(args, flag)]
    overrides += list(args.overrides)
    if args.overwrite:
        overrides.append("output.overwrite=true")
    if args.force_precision:
        overrides.append("training.force_precision=true")
    config = load_config(args.config, overrides)
    if args.dry_run:  # the output directory is checked as the run would check it
        import tempfile

        from plmforge.owned import check_output_dir
        from plmforge.train.run import run_inputs

        kind = "fewshot" if args.few_shot else "cv" if config.cv.folds and config.cv.fold is None else "run"
        check_output_dir(config.output.dir, kind,
                         overwrite=config.output.overwrite, inputs=run_inputs(config),
                         other="choose another output.dir (or --resume to continue it)")

        with tempfile.TemporaryDirectory() as tmp:
            save_config(config, Path(tmp) / "c.yaml")
            print((Path(tmp) / "c.yaml").read_text())
        print("# equivalent command:\n" + preview_command(config))
        return 0
    if args.few_shot:
        few_shot(config, parse_sizes(args.few_shot), args.repeats)
    elif config.cv.folds and config.cv.fold is None:
        cross_validate(config)
    else:
        train(config)
    return 0


def _trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-unverified", action="store_true",
                   help="use weights that have no checksum record (e.g. copied without checksums.json); logged")


def _column_args(p: argparse.ArgumentParser, roles: tuple[str, ...]) -> None:
    for role in roles:
        p.add_argument(f"--{role}-column", metavar="NAME", help=f"the input file's {role} column (default: the "
                       "run's, else the one found in the file; a FASTA's ids come from its headers)")


def _columns(args: argparse.Namespace) -> dict[str, str]:
    return {role: getattr(args, f"{role}_column") for role in ("sequence", "label", "id")
            if getattr(args, f"{role}_column", None)}


def _predict(args: argparse.Namespace) -> int:
    from plmforge.api import load_run, predict, predict_ensemble
    from plmforge.data.stream import read_in_chunks

    from plmforge.outputs import frame_path
    from plmforge.owned import check_output_file

    default = "predictions.csv" if len(args.run_dir) == 1 else "ensemble_predictions.csv"
    out = Path(args.output) if args.output else Path(args.run_dir[0]) / default
    if args.input is not None or args.output is not None:  # checked before any model is loaded
        check_output_file(out, overwrite=args.overwrite, inputs=[args.input],
                          companions=[frame_path(out, "_sequences")])
    check_precision_args(args)
    runs = [load_run(r) for r in args.run_dir]
    what = [args.sequence] if args.sequence is not None else Path(args.input)
    kwargs = dict(batch_size=args.batch_size, max_tokens=args.max_tokens, precision=args.precision,
                  force_precision=args.force_precision, columns=_columns(args))
    # an ensemble reads its input whole unless told otherwise
    if args.input is not None and read_in_chunks(args.input, args.stream if len(runs) == 1 else bool(args.stream)):
        if len(runs) > 1:
            raise ConfigError("an ensemble reads its input whole: pass --no-stream, or predict with each run "
                              "(--stream) and average the files")
        from plmforge.api import predict_file

        done = predict_file(runs[0], args.input, out, **kwargs)  # type: ignore[arg-type]
        chunks = f"{done.chunks} chunk{'s' if done.chunks != 1 else ''}"
        print(f"wrote predictions for {done.sequences} sequences (read in {chunks}) to {', '.join(map(str, done.files))}")
        return 0
    result = predict(runs[0], what, **kwargs) if len(runs) == 1 else predict_ensemble(runs, what, **kwargs)
    if len(runs) > 1:
        print(f"ensemble of {len(runs)} runs (mean of their predictions): " + ", ".join(args.run_dir))
    if args.sequence is not None and args.output is None:
        print(result.frames[list(result.frames)[-1]].to_string(index=False))  # the per-sequence view
        return 0
    written = result.write(out)
    print(f"wrote predictions for {len(result.records)} sequences to {', '.join(map(str, written))}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from plmforge.api import evaluate, evaluation_file
    from plmforge.owned import MARKER, check_output_dir, mark

    name = evaluation_file(args.data).name.split(".")[0]  # test.csv.gz -> eval_test
    out = Path(args.output) if args.output else Path(args.run_dir) / f"eval_{name}"
    check_output_dir(out, "eval", overwrite=args.overwrite, inputs=[args.data, args.run_dir],
                     other="choose another --output")
    check_precision_args(args)
    report = evaluate(args.run_dir, args.data, batch_size=args.batch_size, max_tokens=args.max_tokens,
                      precision=args.precision, force_precision=args.force_precision, stream=args.stream,
                      columns=_columns(args))
    report.write(out)
    if not (out / MARKER).exists():
        mark(out, "eval")
    from plmforge.outputs import with_interval

    intervals = report.blob.get("intervals") or {}
    for k, v in report.metrics.items():
        print(f"{k:<22} {with_interval(v, intervals.get(k))}")
    if intervals:
        print(f"(95% bootstrap intervals over the {len(report.prediction.records)} proteins, "
              f"{report.blob['bootstrap']['resamples']} resamples)")
    print(f"metrics and predictions written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from plmforge.export import export_merged

    out = export_merged(args.run_dir, args.merge, args.overwrite)
    print(f"exported to {out}; predict with: plmforge predict {out} --input FILE")
    return 0


def main(argv: list[str] | None = None) -> int:
    from plmforge.logs import setup_console

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["doctor"], ["--version"]):  # without the full parser, which imports torch: these must
        from plmforge.cli_tools import light_main  # work where torch does not load

        return light_main(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # section.key=value overrides may come after options too (argparse stops collecting them at a flag)
    if extra and getattr(args, "overrides", None) is not None and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    setup_console(args.verbose)
    token = None
    if getattr(args, "trust_unverified", False):  # weights without a checksum record, used knowingly
        from plmforge.checkpoint import TRUST_UNVERIFIED

        token = TRUST_UNVERIFIED.set(True)
    try:
        return args.func(args)
    except PlmforgeError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted: finished epochs are kept in the run directory "
              "(last/); continue with plmforge train --resume RUN_DIR", file=sys.stderr)
        return 130
    finally:
        if token is not None:
            from plmforge.checkpoint import TRUST_UNVERIFIED

            TRUST_UNVERIFIED.reset(token)


if __name__ == "__main__":
    sys.exit(main())
