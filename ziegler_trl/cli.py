"""`ziegler-trl` console entry point.

    ziegler-trl quickstart | collect | sft | train-reward | train-policy   options are dataclass fields (`--config`)
    ziegler-trl eval {summarization,copying,preference,agreement,kl-frontier} ...
    ziegler-trl label {serve,add-labeler,assign,export,import,status} ...

Each command imports what it runs only when it runs: `--help` and the label commands never import torch. A
mistake in what a user gave (`UserInputError`) is printed as one line, `ziegler-trl <command>: error: ...`, with
exit status 2; anything else keeps its traceback (a bug).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import run_reporting_errors

# name → (module with `main(argv)`, one-line help). Their options are dataclass fields parsed by TrlParser.
DATACLASS_COMMANDS = {
    "quickstart": ("ziegler_trl.quickstart", "the mock-sentiment experiment in miniature on the embedded model"),
    "collect": ("ziegler_trl.pipeline", "the paper's loop: offline or batched-online rounds of labels, reward, PPO"),
    "sft": ("ziegler_trl.sft", "supervised fine-tuning on a summarization task's demonstrations (a ρ for PPO)"),
    "train-reward": ("ziegler_trl.reward.pipeline", "train and normalise a best-of-K reward model"),
    "train-policy": ("ziegler_trl.ppo.pipeline", "PPO against a reward model or a built-in scorer"),
}


def _dataclass_command(name: str, argv: Sequence[str], prog: str | None = None) -> None:
    module = importlib.import_module(DATACLASS_COMMANDS[name][0])
    try:
        module.main(list(argv), prog=prog or f"ziegler-trl {name}")  # its return value (metrics, a path) is for Python
    finally:
        _end_process_group()


def _end_process_group() -> None:
    """Tear down the process group a stage under `accelerate launch` started, so no process exits with the
    backend's threads still running (a gloo rank that did aborted with "terminate called without an active
    exception")."""
    dist = sys.modules.get("torch.distributed")  # never imported here: commands without torch stay without it
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_recipe(command: str, script: str) -> None:
    """A recipe script's entry point: the stage `command` on `sys.argv`, its user mistakes one line and status 2, as
    under `ziegler-trl` (`accelerate launch recipes/x.py` runs this on every rank)."""
    sys.exit(run_reporting_errors(script, lambda: _dataclass_command(command, sys.argv[1:], prog=script)))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: dataclass commands as placeholders (their own parser runs when chosen), the eval and
    label groups in full."""
    from .evaluation.commands import register as register_eval
    from .labeling.commands import register as register_label

    parser = argparse.ArgumentParser(prog="ziegler-trl", description="RLHF as in Ziegler et al. (2019), on TRL")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in DATACLASS_COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    register_eval(subparsers)
    register_label(subparsers)
    return parser


def _command_name(argv: Sequence[str]) -> str:
    """`label status`, `eval copying`, `train-policy`: the words naming the command, for error lines."""
    words = [arg for arg in argv[:2] if not arg.startswith("-")]
    return " ".join(words[:2] if words[:1] in (["label"], ["eval"]) else words[:1])


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = " ".join(["ziegler-trl", _command_name(argv)]).strip()
    if argv and argv[0] in DATACLASS_COMMANDS:
        sys.exit(run_reporting_errors(prog, lambda: _dataclass_command(argv[0], argv[1:])))
    if argv[:1] == ["eval"] and len(argv) > 1:
        from .evaluation.commands import TABLES, table_main, table_module

        if argv[1] in TABLES:  # its own parser, which renames the tables' older option names
            sys.exit(table_main(table_module(argv[1]), argv[2:], prog))

    def run() -> int | None:
        args = build_parser().parse_args(argv)
        return args.func(args)

    sys.exit(run_reporting_errors(prog, run))


if __name__ == "__main__":
    main()
