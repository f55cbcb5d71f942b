"""`ziegler-trl eval <table>`: rebuild the paper's tables and figures from saved runs (one module per table).

Each module defines `add_arguments(parser)` and `run(args) -> int`, imports only argparse at the top (so `--help`
is instant), and has a `main(argv)` that `eval/<script>.py` calls. Options follow the stages' names
(`--dataset_name`, `--model_name_or_path`; dashes or underscores); the scripts' older names still work for one
release, with a warning.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ...errors import UserInputError

# `ziegler-trl eval NAME` → module under this package.
TABLES = {
    "summarization": "summarization",
    "copying": "copying",
    "preference": "preference",
    "agreement": "agreement",
    "kl-frontier": "kl_frontier",
}


def table_module(name: str):
    return importlib.import_module(f"{__name__}.{TABLES[name]}")


def add_option(parser: argparse.ArgumentParser, name: str, **kwargs) -> argparse.Action:
    """`--name` plus its dashed spelling (`--model_limit` / `--model-limit`), as TRL's parser accepts both."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return parser.add_argument(*spellings, dest=name, **kwargs)


def describe(doc: str) -> str:
    """A module docstring's first paragraph, for `--help` (where argparse reads % as a format)."""
    return " ".join(doc.split("\n\n")[0].split()).replace("%", "%%")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `eval {summarization,copying,preference,agreement,kl-frontier}` to the CLI's subparsers."""
    parser = subparsers.add_parser("eval", help="rebuild the paper's tables and figures from saved runs")
    tables = parser.add_subparsers(dest="table", required=True, metavar="table")
    for name in TABLES:
        module = table_module(name)
        sub = tables.add_parser(name, help=describe(module.__doc__), description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def parse(module, argv: Sequence[str], prog: str | None = None) -> argparse.Namespace:
    """A table module's arguments, its deprecated option names renamed (with a warning)."""
    from ...config_files import rename_options

    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser.parse_args(rename_options(list(argv), module.RENAMED))


def table_main(module, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse and run one table (`ziegler-trl eval NAME ...` or `python eval/<script>.py ...`); a `UserInputError`
    is printed as one line and returns status 2."""
    import sys

    from ...errors import run_reporting_errors

    argv = sys.argv[1:] if argv is None else argv
    return run_reporting_errors(prog or module.__name__, lambda: module.run(parse(module, argv, prog)))


def check_input_files(args: argparse.Namespace, *options: str) -> None:
    """Each of these options that names a local file must name one that exists (before any model is loaded)."""
    from ...errors import check_input_file

    for option in options:
        value = getattr(args, option, None)
        if value is not None:
            check_input_file(str(value), f"--{option}")


@contextmanager
def reading_inputs() -> Iterator[None]:
    """The task-text, record and label-store readers raise ValueError / KeyError / FileNotFoundError for malformed
    or missing input (each message naming the file and line): report those as the user's mistake."""
    try:
        yield
    except UserInputError:
        raise
    except (ValueError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise UserInputError(message) from err
