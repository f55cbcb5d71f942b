"""Rebuild Figure 3: reward against KL(π‖ρ) for the optimal policy π* ∝ ρ·exp(r/β), with trained policies.

From rewards of samples of ρ saved earlier (JSONL, a `reward` field per line):

    ziegler-trl eval kl-frontier --rewards rho_rewards.jsonl --points runs.jsonl --out frontier.md --plot frontier.png

Or by sampling ρ and scoring the samples with a reward model:

    ziegler-trl eval kl-frontier --task sentiment --dataset_name builtin --model_name_or_path embedded \
        --reward_model runs/rm --limit 64 --k 4 --save_rewards rho_rewards.jsonl --out frontier.md --plot frontier.png

--points is a JSONL of trained policies, one {"name", "kl", "reward"} per line, drawn on the same axes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...jsonl import jsonl_line
from . import add_option, check_input_files, reading_inputs, table_main

RENAMED = {"data": "dataset_name", "split": "dataset_train_split", "policy": "model_name_or_path"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rewards", type=Path, default=None, help="JSONL with a `reward` per sample of ρ")
    parser.add_argument("--task", choices=["cnndm", "descriptiveness", "sentiment", "tldr"], default=None)
    add_option(parser, "dataset_name", default=None,
               help="queries: 'builtin' (the package's sample), a JSONL file or a Hub dataset the task knows")
    add_option(parser, "dataset_train_split", default="train", help="split of a Hub dataset")
    add_option(parser, "model_name_or_path", default="embedded", help="ρ: the pretrained policy")
    add_option(parser, "reward_model", default=None, help="reward model folder scoring ρ's samples")
    parser.add_argument("--limit", type=int, default=64, help="queries to sample")
    parser.add_argument("--k", type=int, default=4, help="samples per query")
    add_option(parser, "batch_size", type=int, default=8)
    parser.add_argument("--betas", type=float, nargs="+", default=[10, 5, 3, 2, 1.5, 1, 0.75, 0.5, 0.3, 0.2, 0.1])
    parser.add_argument("--points", type=Path, default=None, help="JSONL of trained policies: name, kl, reward")
    parser.add_argument("--seed", type=int, default=0)
    add_option(parser, "save_rewards", type=Path, default=None, help="write the sampled rewards to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the frontier")


def sampled_rewards(args: argparse.Namespace):
    import torch

    from ...errors import UserInputError
    from ...models import inference_device, load_policy, load_tokenizer
    from ...reward.model import load_reward_model
    from ...tasks import build_queries, load_task_texts
    from .. import sample_rewards

    for name in ("task", "dataset_name", "reward_model"):
        if getattr(args, name) is None:
            raise UserInputError(f"without --rewards, give --{name}")
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.model_name_or_path)
    with reading_inputs():
        texts = list(load_task_texts(args.task, args.dataset_name, split=args.dataset_train_split,
                                     limit=args.limit)["text"])
    queries = build_queries(texts, args.task, tokenizer)
    if not queries:
        raise UserInputError(f"{args.dataset_name}: no text makes a valid {args.task} query")
    device = inference_device()
    policy = load_policy(args.model_name_or_path).to(device)
    reward_model = load_reward_model(args.reward_model).to(device)
    policy.eval()
    reward_model.eval()
    return sample_rewards(policy, reward_model, tokenizer, queries, args.task, args.k, args.batch_size).numpy()


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import markdown_table, optimal_policy_frontier, plot_frontier, read_records, write_markdown
    from ..tables import fmt

    check_input_files(args, "rewards", "points", "dataset_name")
    if args.rewards is not None:
        with reading_inputs():
            rewards = np.array([r["reward"] for r in read_records(args.rewards, {"reward": (int, float)})])
    else:
        rewards = sampled_rewards(args)
    with reading_inputs():
        fields = {"name": str, "kl": (int, float), "reward": (int, float)}
        points = [(p["name"], float(p["kl"]), float(p["reward"])) for p in read_records(args.points, fields)] \
            if args.points else []
        frontier = optimal_policy_frontier(rewards, args.betas)
    if args.save_rewards:
        args.save_rewards.write_text("".join(jsonl_line({"reward": float(r)}) for r in rewards), encoding="utf-8")
    body = [[fmt(p.beta, 3), fmt(p.kl, 3), fmt(p.reward, 3), fmt(p.effective_samples, 1)] for p in frontier]
    body += [[f"policy {name}", fmt(kl, 3), fmt(reward, 3), ""] for name, kl, reward in points]
    text = (
        f"Optimal policy π* ∝ ρ·exp(r/β) estimated from {len(rewards)} samples of ρ (mean reward under ρ "
        f"{rewards.mean():.3f}); KL in nats, at most log N = {np.log(len(rewards)):.2f} with N samples.\n\n"
        + markdown_table(["β", "KL(π*‖ρ)", "E_π*[r]", "effective samples"], body)
    )
    write_markdown(args.out, text)
    if args.plot:
        plot_frontier(frontier, args.plot, points)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return table_main(sys.modules[__name__], argv, prog)
