"""`ziegler-trl label ...`: serve the web app, add or revoke labelers, assign comparisons, export/import, status.

`register(subparsers)` adds the `label` group to the main argparse CLI; each leaf sets `func(args) -> int`.
The functions below do the work and are what tests call.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import UserInputError, check_input_file
from ..jsonl import jsonl_line
from .agreement import agreement_summary
from .import_export import AGGREGATES
from .store import LabelStore

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def add_labeler(store_path: str | Path, name: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """Register `name` (or find them) and return their personal labeling link: the live one, or a new one when
    their link was revoked."""
    store = LabelStore(store_path)
    return f"{base_url.rstrip('/')}/label/{store.add_labeler(name)}"


def revoke(store_path: str | Path, name: str) -> str:
    """Revoke `name`'s link (it opens nothing from now on; their answers stay) and say what happened."""
    store = LabelStore(store_path)
    try:
        revoked = store.revoke_labeler(name)
    except KeyError:
        known = ", ".join(store.labelers()) or "none"
        raise UserInputError(f"{store.path}: no labeler named {name!r} (labelers: {known})") from None
    if not revoked:
        return f"{name} has no live link (already revoked); `ziegler-trl label add-labeler` issues a new one"
    return (f"revoked the link of {name}; their answers stay, their unanswered comparisons go to others at the next "
            f"`ziegler-trl label assign`, and `ziegler-trl label add-labeler --store {store.path} {name}` issues a "
            "new link")


def assign(
    store_path: str | Path,
    labelers: list[str] | None = None,
    overlap: float = 0.0,
    repeats: int = 5,
    seed: int = 0,
    round: int | None = None,
) -> int:
    """Assign unassigned comparisons (of one round, or all) to labelers; returns assignments added."""
    store = LabelStore(store_path)
    ids = store.comparison_ids(round=round) if round is not None else None
    return store.assign(ids, labelers or None, overlap=overlap, repeats=repeats, seed=seed)


def export(store_path: str | Path, output: str | Path, dataset: bool = False, aggregate: str = "majority") -> int:
    """Write every comparison with its answers as JSONL, or with `dataset` the reward trainer's rows
    (`to_dataset(aggregate)`) as JSONL; returns the number of lines."""
    store = LabelStore(store_path)
    if dataset:
        rows = store.to_dataset(aggregate)
        Path(output).write_text("".join(jsonl_line(row) for row in rows), encoding="utf-8")
        return len(rows)
    return store.export_jsonl(output).count("\n")


def import_labels(store_path: str | Path, path: str | Path, labeler: str = "import") -> int:
    """Import a JSONL file of comparisons, answered or not (all or nothing); returns the number of new answers.

    Unanswered rows {"prompt", "completions"[, "task", "round", "policy"]} queue one's own comparisons for people:
    `label assign` then hands them out in the web app.
    """
    return LabelStore(store_path).import_jsonl(path, labeler=labeler)


def status(store_path: str | Path, base_url: str = DEFAULT_BASE_URL) -> str:
    """A plain-text summary: totals, per-labeler progress, agreement, the admin link."""
    store = LabelStore(store_path)
    counts = store.counts()
    lines = [
        f"store {store.path}: {counts['comparisons']} comparisons, {counts['answered_comparisons']} answered, "
        f"{counts['answers']} answers, {counts['skipped']} skipped, {counts['labelers']} labelers",
        f"{'labeler':<20} {'assigned':>8} {'answered':>8} {'skipped':>8} {'pending':>8}",
    ]
    for name, row in store.progress().items():
        lines.append(f"{name:<20} {row['assigned']:>8} {row['answered']:>8} {row['skipped']:>8} {row['pending']:>8}")
    agreement = agreement_summary(store.judgements(store.labelers()))  # people only, not simulated labelers
    if agreement.pairs:
        stderr = f" ± {100 * agreement.stderr:.1f}%" if agreement.comparisons > 1 else ""
        lines.append(f"labeler agreement {100 * agreement.rate:.1f}%{stderr} over {agreement.pairs} pairs, each of "
                     f"the {agreement.comparisons} comparisons weighted equally (chance {100 * agreement.chance:.1f}%)")
    else:
        lines.append("agreement: no comparison answered by two labelers yet")
    lines.append(f"admin page: {base_url.rstrip('/')}/admin/{store.admin_token}")
    return "\n".join(lines)


def _new_or_existing_store(text: str) -> str:
    """A store path for the commands that create a store (its folders too, as `LabelStore` does); not a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give the path of a .sqlite file")
    return text


def _existing_store(text: str) -> str:
    """A store that exists: reading commands refuse a mistyped path rather than create an empty store there."""
    _new_or_existing_store(text)
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(
            f"no label store at {text}: `ziegler-trl label add-labeler` or `ziegler-trl label import` creates one"
        )
    return text


def _output_path(text: str) -> str:
    if not Path(text).parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {Path(text).parent} does not exist")
    return text


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `label {serve,add-labeler,revoke,assign,export,import,status}` to the CLI's subparsers."""
    parser = subparsers.add_parser("label", help="human labeling: web app, labelers, assignments, label files")
    commands = parser.add_subparsers(dest="label_command", required=True)

    def with_store(sub: argparse.ArgumentParser, creates: bool = False) -> argparse.ArgumentParser:
        sub.add_argument("--store", required=True, type=_new_or_existing_store if creates else _existing_store,
                         help="path of the SQLite label store" + (" (created, with its folder, if missing)"
                                                                   if creates else ""))
        return sub

    sub = with_store(commands.add_parser("serve", help="run the labeling web app"))
    sub.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for every one)")
    sub.add_argument("--port", type=int, default=8000,
                     help="port to listen on; 0 picks a free one (the printed links show the port served)")
    sub.add_argument("--base-url", default=None,
                     help="public URL of the app for printed links (default http://HOST:PORT, the port served)")
    sub.add_argument("--ranking", action="store_true",
                     help="ask for a full ranking of the K completions, not only the best")

    def run_serve(args: argparse.Namespace) -> int:
        from .app import serve

        serve(LabelStore(args.store), args.host, args.port, args.base_url, args.ranking)
        return 0

    sub.set_defaults(func=run_serve)

    sub = with_store(commands.add_parser(
        "add-labeler", help="create a labeler and print their link (a new link if theirs was revoked)"), creates=True)
    sub.add_argument("name")
    sub.add_argument("--base-url", default=DEFAULT_BASE_URL, help="public URL of the app, for the printed link")
    sub.set_defaults(func=lambda args: print(add_labeler(args.store, args.name, args.base_url)) or 0)

    sub = with_store(commands.add_parser(
        "revoke", help="revoke a labeler's link (answers stay; add-labeler issues a new link)"))
    sub.add_argument("name")
    sub.set_defaults(func=lambda args: print(revoke(args.store, args.name)) or 0)

    sub = with_store(commands.add_parser("assign", help="assign unassigned comparisons to labelers"))
    sub.add_argument("--labelers", nargs="*", default=None, help="names (default: every registered labeler)")
    sub.add_argument("--overlap", type=_fraction, default=0.05,
                     help="fraction of comparisons given to several labelers, for agreement (paper: 0.05)")
    sub.add_argument("--repeats", type=int, default=5, help="labelers per overlapping comparison (paper: 5)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--round", type=int, default=None, help="only comparisons of this round")

    def run_assign(args: argparse.Namespace) -> int:
        try:
            added = assign(args.store, args.labelers, args.overlap, args.repeats, args.seed, args.round)
        except (KeyError, ValueError) as err:  # the store says which labeler is missing and how to add one
            raise UserInputError(err.args[0]) from err
        print(f"{added} assignments added")
        return 0

    sub.set_defaults(func=run_assign)

    sub = with_store(commands.add_parser("export", help="write comparisons and answers as JSONL"))
    sub.add_argument("output", type=_output_path)
    sub.add_argument("--dataset", action="store_true",
                     help="write the reward trainer's rows {prompt, completions, best[, ranking]} instead")
    sub.add_argument("--aggregate", choices=AGGREGATES, default="majority",
                     help="with --dataset: how several answers to one comparison become rows")

    def run_export(args: argparse.Namespace) -> int:
        print(f"{export(args.store, args.output, args.dataset, args.aggregate)} lines written to {args.output}")
        return 0

    sub.set_defaults(func=run_export)

    sub = with_store(commands.add_parser(
        "import", help="add comparisons from a JSONL file: answered (an export, best-of-K rows) or unanswered "
        "({prompt, completions} rows, for people to label after `label assign`)"), creates=True)
    sub.add_argument("path")
    sub.add_argument("--labeler", default="import", help="labeler id for rows that name none")

    def run_import(args: argparse.Namespace) -> int:
        check_input_file(args.path, "input file")
        before = LabelStore(args.store).counts()["comparisons"]
        answers = import_labels(args.store, args.path, args.labeler)
        added = LabelStore(args.store).counts()["comparisons"] - before
        print(f"{added} new comparisons and {answers} new answers imported from {args.path}")
        if added:
            print(f"people label the unanswered ones after: ziegler-trl label assign --store {args.store}")
        return 0

    sub.set_defaults(func=run_import)

    sub = with_store(commands.add_parser("status", help="progress, agreement and the admin link"))
    sub.add_argument("--base-url", default=DEFAULT_BASE_URL)
    sub.set_defaults(func=lambda args: print(status(args.store, args.base_url)) or 0)
    return parser
