"""Is the reward model or the optimiser the limit? Best-of-n from ρ on a quickstart's held-out queries.

For each held-out query ρ samples `--candidates` continuations; best-of-n picks, among n of them, the one the run's
reward model scores highest (and, for comparison, the one the labeler itself scores highest: a perfect reward). Its
KL from ρ is at most log n − (n − 1)/n nats (Stiennon et al. 2020; Beirami et al. 2024), so this is what an ideal optimiser of the
reward reaches with a small fraction of PPO's KL budget. Printed per n: that KL bound, the labeler's 2-way preference
for the pick over independent samples of ρ (ties count half, as the labeler's shuffled order decides them) and the
picks' mean labeler score.

    python benchmarks/reward_best_of_n.py --run runs/quickstart
    python benchmarks/reward_best_of_n.py --run runs/quickstart --reward-model other_run/reward_model

Figures measured with it on a default quickstart run, and the commit they came from: docs/quickstart.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import torch

from ziegler_trl.config_files import with_current_names
from ziegler_trl.labeling import sentiment_score
from ziegler_trl.models import load_tokenizer
from ziegler_trl.quickstart import RENAMED, QuickstartConfig
from ziegler_trl.quickstart.stages import as_queries
from ziegler_trl.quickstart.stages import task as quickstart_task
from ziegler_trl.reward.model import load_reward_model
from ziegler_trl.reward.scoring import score_texts
from ziegler_trl.sampling import sample_completions
from ziegler_trl.stages import load_sampler

BASELINES = 8  # independent samples of ρ per query that each pick is compared with


def kl_bound(n: int) -> float:
    """Upper bound on KL(best-of-n ‖ ρ) in nats."""
    return math.log(n) - (n - 1) / n


def preference(picked: torch.Tensor, baseline: torch.Tensor) -> float:
    """Share of (pick, baseline) pairs the labeler prefers the pick in; ties count half. [Q] vs [Q, B] scores."""
    picked = picked[:, None]
    return ((picked > baseline).float() + 0.5 * (picked == baseline).float()).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/quickstart", help="A finished quickstart folder.")
    parser.add_argument("--reward-model", help="Another reward model folder (default: the run's).")
    parser.add_argument("--candidates", type=int, default=16, help="Samples of ρ per held-out query.")
    parser.add_argument("--draws", type=int, default=8, help="Random n-subsets per query for n < candidates.")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    run = Path(args.run)
    settings = with_current_names(json.loads((run / "config.json").read_text()), RENAMED)
    cfg = QuickstartConfig(**{**settings, "output_dir": str(run)})
    model = str(run / "smoke-model") if cfg.smoke else cfg.model_name_or_path
    tokenizer = load_tokenizer(model)
    held_out = json.loads((run / "queries.json").read_text())["held_out"]
    queries, task = as_queries(held_out, tokenizer), quickstart_task(cfg)
    rho = load_sampler(model, tokenizer, cfg.sampling_dtype)
    torch.manual_seed(args.seed)
    candidates = sample_completions(rho, tokenizer, queries, task, k=args.candidates, batch_size=8).texts(tokenizer)
    baselines = sample_completions(rho, tokenizer, queries, task, k=BASELINES, batch_size=16).texts(tokenizer)
    del rho

    flat = [text for texts in candidates for text in texts]
    prompts = [query for query, texts in zip(held_out, candidates) for _ in texts]
    shape = (len(held_out), args.candidates)
    labeler = torch.tensor(sentiment_score(flat)).view(shape)
    baseline = torch.tensor(sentiment_score([t for texts in baselines for t in texts])).view(len(held_out), BASELINES)
    reward_model = load_reward_model(args.reward_model or str(run / "reward_model"), tokenizer).eval()
    with torch.no_grad():
        reward = score_texts(reward_model, tokenizer, prompts, flat).view(shape)

    print(f"\nBest-of-n from ρ on {len(held_out)} held-out queries of {run} ({args.candidates} candidates, "
          f"{BASELINES} baselines per query; ρ's own samples: mean labeler score {baseline.mean():+.3f})\n")
    print("| n | KL bound (nats) | picked by | pick preferred over ρ | mean labeler score |")
    print("|---|---|---|---|---|")
    rng = random.Random(args.seed)
    rows = torch.arange(len(held_out))
    for n in sorted({n for n in (1, 2, 4, 8) if n < args.candidates} | {args.candidates}):
        draws = args.draws if n < args.candidates else 1
        subsets = [torch.tensor([rng.sample(range(args.candidates), n) for _ in held_out]) for _ in range(draws)]
        for name, selector in (("reward model", reward), ("labeler (perfect reward)", labeler)):
            picks = [labeler.gather(1, s)[rows, selector.gather(1, s).argmax(dim=1)] for s in subsets]
            win = sum(preference(p, baseline) for p in picks) / draws
            score = torch.stack(picks).mean().item()
            print(f"| {n} | {kl_bound(n):.2f} | {name} | {win:.1%} | {score:+.3f} |")


if __name__ == "__main__":
    main()
