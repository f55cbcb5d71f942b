"""`ziegler-trl` console entry point."""

from __future__ import annotations

import argparse
import sys

from trl import TrlParser


def _quickstart(argv: list[str]) -> None:
    from .quickstart import QuickstartConfig, run_quickstart

    (config,) = TrlParser((QuickstartConfig,)).parse_args_and_config(argv)
    run_quickstart(config)


def _train_reward(argv: list[str]) -> None:
    from .reward.pipeline import main as train_reward_main

    train_reward_main(argv)


def _train_policy(argv: list[str]) -> None:
    from .ppo.pipeline import main as train_policy_main

    train_policy_main(argv)


def _collect(argv: list[str]) -> None:
    from .pipeline import main as pipeline_main

    pipeline_main(argv)


# Subcommands whose options are dataclass fields (parsed by TrlParser, YAML via --config).
DATACLASS_COMMANDS = {
    "quickstart": (_quickstart, "the mock-sentiment experiment in miniature on the embedded model"),
    "collect": (_collect, "the paper's loop: offline or batched-online rounds of label → reward model → PPO"),
    "train-reward": (_train_reward, "train and normalise a best-of-K reward model (see recipes/train_reward.py)"),
    "train-policy": (_train_policy, "PPO against a reward model or scorer (see recipes/train_policy.py)"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DATACLASS_COMMANDS:
        command, _ = DATACLASS_COMMANDS[argv[0]]
        command(argv[1:])
        return
    from .labeling.commands import register as register_label

    parser = argparse.ArgumentParser(prog="ziegler-trl", description="RLHF as in Ziegler et al. (2019), on TRL")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in DATACLASS_COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    register_label(subparsers)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
