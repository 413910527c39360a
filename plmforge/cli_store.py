"""Command line of the data side: `plmforge embed`, `structure` (files in, files out) and the catalogue and
store listings (`models`, `methods`, `data check|list`, `cache info|clear`). Parses arguments and prints
results; the work is in plmforge.embed, plmforge.structure, plmforge.data and plmforge.store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plmforge.cli_tools import check_precision_args, precision_args
from plmforge.errors import PlmforgeError

MODEL_HELP = "a zoo name (`plmforge models`), a hub id or a local model directory"


def file_parsers(sub: argparse._SubParsersAction) -> None:
    _embed_parser(sub)
    _structure_parser(sub)


def catalogue_parsers(sub: argparse._SubParsersAction) -> None:
    from plmforge.tasks import PROBLEM_TYPES

    sub.add_parser("models", help="list the model zoo").set_defaults(func=_models)
    sub.add_parser("methods", help="list the fine-tuning methods and their options").set_defaults(func=_methods)
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate and summarise a dataset")
    check.add_argument("path", help="catalogue name, file, directory or hub id")
    check.add_argument("overrides", nargs="*", metavar="data.key=value")
    check.add_argument("--problem-type", choices=list(PROBLEM_TYPES), metavar="PROBLEM_TYPE",
                       help="one of " + ", ".join(PROBLEM_TYPES))
    check.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                       help="read local files in chunks of rows (memory bounded, with a progress bar); the default "
                            "streams datasets of 64 MB or more")
    check.set_defaults(func=_data_check)
    data.add_parser("list", help="list the pre-defined datasets").set_defaults(func=_data_list)
    cache = sub.add_parser("cache", help="the persistent embedding store").add_subparsers(dest="cache_command",
                                                                                          required=True)
    for name, func, text in (("info", _cache_info, "what the store holds, per model and settings"),
                             ("clear", _cache_clear, "delete stored embeddings")):
        p = cache.add_parser(name, help=text)
        p.add_argument("--dir", help="store directory (default $PLMFORGE_CACHE_DIR or ~/.cache/plmforge/embeddings)")
        if name == "clear":
            p.add_argument("--model", help="only the entries of models whose source contains this text")
            p.add_argument("--yes", "-y", action="store_true", help="delete without asking")
        p.set_defaults(func=func)


def _embed_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embeddings of sequences (HDF5 keyed by id)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--input", required=True, help="CSV, TSV, JSONL, Parquet or FASTA file of sequences")
    p.add_argument("--out", default="embeddings.h5", help="HDF5 file to write (default embeddings.h5)")
    p.add_argument("--per-residue", action="store_true", help="one vector per residue instead of the protein mean")
    p.add_argument("--pooling", choices=["mean"], default="mean", help="protein embedding: mean over residues")
    p.add_argument("--layer", type=int, default=-1, help="hidden state to take: -1 the last layer (default), "
                                                         "0 the embedding layer")
    p.add_argument("--max-tokens", type=int, default=8000, help="token budget per batch (length-sorted)")
    precision_args(p)
    p.add_argument("--sequence-column", default="aa_seq", help="sequence column of a table (default aa_seq)")
    p.add_argument("--cache-dir", help="embedding store directory (default $PLMFORGE_CACHE_DIR or ~/.cache/...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_embed)


def _structure_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("structure", help="structure tokens (3Di, DSSP) from PDB/mmCIF files, or added to a dataset",
                       description="Write one row per protein chain (id <file stem>_<chain>, chain, aa_seq, "
                       "foldseek_seq, ss8_seq) for structure files, directories or globs; or, with --dataset, "
                       "add foldseek_seq and ss8_seq to a dataset's rows by their id (see plmforge/structure/"
                       "dataset.py for the exact id-to-file rule).")
    p.add_argument("paths", nargs="*", help=".pdb/.ent/.cif/.mmcif files (optionally .gz), directories, globs")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--dataset", help="a dataset file to add the structure columns to (never overwritten)")
    p.add_argument("--structures", help="with --dataset: the directory of the structure files")
    p.add_argument("--id-column", default="name", help="with --dataset: the column naming each row's file "
                                                       "(default name)")
    p.add_argument("--sequence-column", default="aa_seq", help="with --dataset: the sequence column (default aa_seq)")
    p.add_argument("--workers", type=int, help="parallel processes (default: CPU count, at most 8)")
    p.add_argument("--ss", choices=["auto", "mkdssp", "pydssp"], default="auto",
                   help="secondary structure: mkdssp (8 states, column ss8_seq) when installed, else pydssp "
                        "(3 states, column ss3_seq)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_structure)


def _embed(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from plmforge.embed import EmbedOptions, embed
    from plmforge.owned import check_output_file

    out = check_output_file(args.out, overwrite=args.overwrite, inputs=[args.input], flag="--out")
    if args.max_tokens < 64:
        raise PlmforgeError(f"--max-tokens must be >= 64, got {args.max_tokens}")
    check_precision_args(args)
    options = EmbedOptions(args.per_residue, args.layer, args.max_tokens, args.precision, args.cache_dir,
                           args.force_precision)
    result = embed(args.model, Path(args.input), options, args.sequence_column)
    if PartialState().is_main_process:
        result.write(out)
        shape = result.arrays[0].shape[-1] if result.arrays else 0
        print(f"wrote {len(result.ids)} {'per-residue' if args.per_residue else 'mean'} embeddings "
              f"(dimension {shape}) to {out}")
    return 0


def _structure(args: argparse.Namespace) -> int:
    from plmforge.owned import check_output_file

    out = check_output_file(args.out, overwrite=args.overwrite, inputs=[args.dataset, *args.paths], flag="--out")
    if args.workers is not None and args.workers < 1:
        raise PlmforgeError(f"--workers must be >= 1, got {args.workers}")
    if args.dataset:
        return _structure_dataset(args, out)
    if not args.paths:
        raise PlmforgeError("give structure files, directories or globs (or --dataset with --structures)")
    from plmforge.structure.build import structure_tokens

    try:
        result = structure_tokens(args.paths, args.workers, args.ss)
    except FileNotFoundError as exc:  # --ss mkdssp without mkdssp
        raise PlmforgeError(str(exc)) from None
    if result.chains:  # no file at all when nothing could be read (a header-only CSV looks like a result)
        result.write(out)
    files = len(result.reports)
    print(f"wrote {len(result.chains)} protein chains from {files} files to {out if result.chains else 'no file'} "
          f"in {result.seconds:.1f} s "
          f"({files / max(result.seconds, 1e-9):.1f} structures/s); secondary structure: "
          f"{result.secondary.description}")
    for report in result.reports:
        for note in report.notes:
            print(f"  {Path(report.file).name}: {note}")
        for chain in report.chains:
            for note in chain.notes:
                print(f"  {chain.id}: {note}")
    skipped = result.skipped()
    if skipped:
        print(f"left out ({len(skipped)}):")
        for file, chain, why in skipped:
            print(f"  {Path(file).name}{' chain ' + chain if chain else ''}: {why}")
    failed = result.failures()
    if failed:  # the good files are written; the exit code says not everything was
        print(f"error: {failed} of the inputs failed (listed above); {len(result.chains)} chains were written",
              file=sys.stderr)
        return 1
    return 0


def _structure_dataset(args: argparse.Namespace, out: Path) -> int:
    from plmforge.structure.dataset import add_structure_columns

    if not args.structures:
        raise PlmforgeError("--dataset needs --structures DIR (the directory of the structure files)")
    if args.paths:
        raise PlmforgeError("with --dataset, give the structure directory with --structures, not as paths")
    try:
        report = add_structure_columns(args.dataset, args.structures, out, args.id_column, args.sequence_column,
                                       args.workers, args.ss)
    except FileNotFoundError as exc:
        raise PlmforgeError(str(exc)) from None
    print(f"wrote {out}: structure columns for {report.matched} of {report.rows} rows; secondary structure: "
          f"{report.secondary or 'none (no row matched a file)'}")
    if report.problems:
        print(f"{len(report.problems)} rows without structure columns (left empty):", file=sys.stderr)
        for where, ident, problem in report.problems:
            print(f"  {where}, id {ident}: {problem}", file=sys.stderr)
        return 1
    return 0


def _table(rows: list[dict[str, str]]) -> str:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _models(args: argparse.Namespace) -> int:
    from plmforge.models.zoo import zoo_rows

    print(_table(zoo_rows()))
    return 0


def _methods(args: argparse.Namespace) -> int:
    from plmforge.methods import method_rows

    print(_table(method_rows()))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from plmforge.data.inspect import check_dataset

    overrides = [f"data.dataset={args.path}", *args.overrides]
    if args.problem_type:
        overrides.append(f"data.problem_type={args.problem_type}")
    from plmforge.models.backbone import residue_limit

    print(check_dataset(overrides, lambda config: residue_limit(config.model), stream=args.stream,
                        progress=True).render())
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from plmforge.data.inspect import list_catalogue

    print(list_catalogue())
    return 0


def _cache_info(args: argparse.Namespace) -> int:
    import time

    from plmforge.store import cache_root, store_infos

    root = cache_root(args.dir)
    infos = store_infos(root) if root.is_dir() else []
    if not infos:
        print(f"the embedding store at {root} is empty")
        return 0
    print(_table([{"id": i.digest, "model": i.fingerprint.get("source", "?"), "stored": i.fingerprint.get("stored", "?"),
                   "dtype": i.fingerprint.get("dtype", "?"), "max residues": str(i.fingerprint.get("max_residues", "?")),
                   "entries": str(i.entries), "MB": f"{i.megabytes:.1f}",
                   "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(i.last_used)),
                   "unfinished files": str(i.incomplete_files)} for i in infos]))
    print(f"{root}: {sum(i.entries for i in infos)} entries, {sum(i.megabytes for i in infos):.1f} MB")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    from plmforge.store import cache_root, clear_store

    from plmforge.store import store_infos

    root = cache_root(args.dir)
    infos = [i for i in (store_infos(root) if root.is_dir() else [])
             if args.model is None or args.model in i.fingerprint.get("source", "")]
    if infos and not args.yes:
        listing = "\n".join(f"  {i.digest}  {i.fingerprint.get('source', '?')}  {i.entries:,} entries, {i.megabytes} MB"
                            for i in infos)
        print(f"would delete {len(infos)} stored model setting(s) from {root}:\n{listing}")
        if not sys.stdin.isatty():
            raise PlmforgeError("nothing deleted: pass --yes to delete these stored embeddings")
        if input("delete them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    removed = clear_store(root, args.model) if root.is_dir() else []
    print(f"removed {len(removed)} stored model setting(s) from {root}")
    return 0
