"""Rebuild Figure 3: reward against KL(π‖ρ) for the optimal policy π* ∝ ρ·exp(r/β), with trained policies.

From rewards of samples of ρ saved earlier (JSONL, a `reward` field per line):

    python eval/kl_frontier.py --rewards rho_rewards.jsonl --points runs.jsonl --out frontier.md --plot frontier.png

Or by sampling ρ and scoring the samples with a reward model:

    python eval/kl_frontier.py --task sentiment --data ../shared/data/books_sample.jsonl --policy embedded \
        --reward-model runs/rm --limit 64 --k 4 --save-rewards rho_rewards.jsonl --out frontier.md --plot frontier.png

--points is a JSONL of trained policies, one {"name", "kl", "reward"} per line, drawn on the same axes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ziegler_trl.evaluation import write_markdown, markdown_table, optimal_policy_frontier, plot_frontier, read_records, sample_rewards
from ziegler_trl.evaluation.tables import fmt
from ziegler_trl.jsonl import jsonl_line
from ziegler_trl.models import inference_device, load_policy, load_reward_model, load_tokenizer
from ziegler_trl.tasks import TASKS, build_queries, load_task_texts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewards", type=Path, default=None, help="JSONL with a `reward` per sample of ρ")
    parser.add_argument("--task", choices=sorted(TASKS), default=None)
    parser.add_argument("--data", default=None, help="JSONL file or Hub dataset name with the queries")
    parser.add_argument("--split", default="train", help="split of a Hub dataset")
    parser.add_argument("--policy", default="embedded", help="ρ: the pretrained policy")
    parser.add_argument("--reward-model", default=None, help="reward model folder scoring ρ's samples")
    parser.add_argument("--limit", type=int, default=64, help="queries to sample")
    parser.add_argument("--k", type=int, default=4, help="samples per query")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--betas", type=float, nargs="+", default=[10, 5, 3, 2, 1.5, 1, 0.75, 0.5, 0.3, 0.2, 0.1])
    parser.add_argument("--points", type=Path, default=None, help="JSONL of trained policies: name, kl, reward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-rewards", type=Path, default=None, help="write the sampled rewards to this JSONL")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the frontier")
    return parser.parse_args(argv)


def sampled_rewards(args: argparse.Namespace) -> np.ndarray:
    for name in ("task", "data", "reward_model"):
        if getattr(args, name) is None:
            raise ValueError(f"without --rewards, give --{name.replace('_', '-')}")
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.policy)
    texts = list(load_task_texts(args.task, args.data, split=args.split, limit=args.limit)["text"])
    queries = build_queries(texts, args.task, tokenizer)
    if not queries:
        raise ValueError(f"{args.data}: no text makes a valid {args.task} query")
    device = inference_device()
    policy, reward_model = load_policy(args.policy).to(device), load_reward_model(args.reward_model).to(device)
    policy.eval()
    reward_model.eval()
    return sample_rewards(policy, reward_model, tokenizer, queries, args.task, args.k, args.batch_size).numpy()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.rewards is not None:
            rewards = np.array([r["reward"] for r in read_records(args.rewards, {"reward": (int, float)})])
        else:
            rewards = sampled_rewards(args)
        points = (
            [
                (p["name"], float(p["kl"]), float(p["reward"]))
                for p in read_records(args.points, {"name": str, "kl": (int, float), "reward": (int, float)})
            ]
            if args.points
            else []
        )
        frontier = optimal_policy_frontier(rewards, args.betas)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
