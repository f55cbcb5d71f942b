"""How much PPO the quickstart's effect needs: rerun its PPO stage from ρ with other budgets and rewards, and print
the held-out effect of each (labeler score gain π − ρ, 2-way preference for π, final KL).

Reads a finished quickstart folder (its queries, label store and reward model) and writes one folder per variant
under --out. Rewards: `rm` (the run's trained reward model: what the quickstart does), `vader` (the labeler's own
VADER score: a perfect reward), `zvader` (VADER standardised on ρ's samples in the label store, mean 0 / std 1 like
the normalised reward model, so the −1 validity penalty weighs the same as with `rm`).

    python benchmarks/ppo_sample_efficiency.py --run runs/quickstart --rewards rm zvader --episodes 256 1024
    python benchmarks/ppo_sample_efficiency.py --run runs/quickstart --rewards zvader --episodes 256 \\
        --set policy_learning_rate=5e-4 policy_trainable_top_layers=2
    python benchmarks/ppo_sample_efficiency.py --run runs/quickstart --rewards zvader --episodes 512 \\
        --set lam=0.95 penalize_invalid=True --ppo-set cliprange=0.1
    python benchmarks/ppo_sample_efficiency.py --run runs/quickstart --rewards rm --episodes 448 \\
        --set reward_shaping=potential lam=0.95 seed=1

Each variant trains from ρ with the run's settings except `total_episodes` and the `--set` overrides (any
QuickstartConfig field; its earlier names too) and `--ppo-set` ones (any other ZieglerPPOConfig field, e.g.
`cliprange`). With `rm` a variant is the quickstart's own PPO stage; the VADER rewards build their trainer here. On a
2-core CPU a variant costs about 0.7 s per episode plus 45 s of evaluation (2,048 episodes: 1,421 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

from datasets import Dataset

from ziegler_trl.blocks import freeze_bottom_layers
from ziegler_trl.config_files import with_current_names
from ziegler_trl.labeling import LabelStore, sentiment_score
from ziegler_trl.models import load_policy, load_tokenizer
from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer
from ziegler_trl.quickstart.config import RENAMED, QuickstartConfig
from ziegler_trl.quickstart.report import evaluate
from ziegler_trl.quickstart.stages import ppo_settings
from ziegler_trl.stages import train_policy


def reward_function(name: str, run: Path):
    """None for the trained reward model; else a reward_fn(prompts, completions) on the completions' VADER score."""
    if name == "rm":
        return None
    if name == "vader":
        return lambda prompts, completions, **_: sentiment_score(completions)
    store = LabelStore(run / "labels.sqlite")
    rho = sentiment_score([c.completions[0] for c in store.comparisons(round=0)])
    store.close()
    mean, std = statistics.fmean(rho), statistics.pstdev(rho)
    return lambda prompts, completions, **_: [(s - mean) / std for s in sentiment_score(completions)]


def run_ppo(cfg: QuickstartConfig, model: str, root: Path, reward_fn, ppo_overrides: dict) -> None:
    """The quickstart's PPO stage with `ppo_overrides`, against the run's reward model or `reward_fn` when given;
    writes `policy/` and `ppo_log.json` as the quickstart does (what `evaluate` reads)."""
    args = ZieglerPPOConfig(**{**ppo_settings(cfg, root), **ppo_overrides})
    prompts = Dataset.from_dict({"prompt": json.loads((root / "queries.json").read_text())["train"]})
    if reward_fn is None:
        reward_model = str(root / "reward_model")
        train_policy(model, args, prompts, reward_model, trainable_top_layers=cfg.policy_trainable_top_layers,
                     data_source=str(root / "queries.json"), reward_description=f"the reward model `{reward_model}`",
                     log_file=root / "ppo_log.json")
        return
    tokenizer = load_tokenizer(model)
    policy = load_policy(model, tokenizer)
    freeze_bottom_layers(policy, cfg.policy_trainable_top_layers)
    trainer = ZieglerPPOTrainer(policy, args=args, train_dataset=prompts, processing_class=tokenizer,
                                reward_fn=reward_fn)
    trainer.train()
    trainer.save_model(args.output_dir)
    (root / "ppo_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))


def parse_overrides(pairs: list[str], config=QuickstartConfig, option: str = "--set", renamed=None) -> dict:
    fields = {f.name for f in dataclasses.fields(config)}
    overrides = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        name = (renamed or {}).get(name, name)
        if name not in fields or not value:
            raise SystemExit(f"{option} {pair!r}: expected field=value with a {config.__name__} field")
        try:  # numbers, true/false, quoted strings; a bare word is a string
            overrides[name] = json.loads(value) if value not in ("True", "False") else value == "True"
        except json.JSONDecodeError:
            overrides[name] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/quickstart", help="A finished quickstart folder.")
    parser.add_argument("--out", default="runs/ppo_sample_efficiency")
    parser.add_argument("--rewards", nargs="+", default=["rm", "zvader"], choices=["rm", "vader", "zvader"])
    parser.add_argument("--episodes", nargs="+", type=int, default=[256])
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="QuickstartConfig overrides.")
    parser.add_argument("--ppo-set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="ZieglerPPOConfig overrides (applied last, e.g. cliprange).")
    args = parser.parse_args()

    run = Path(args.run)
    # the evaluation reads reward_metrics.json: check it before minutes of PPO, not after
    for name in ("config.json", "queries.json", "labels.sqlite", "reward_model/reward_metrics.json"):
        if not (run / name).exists():
            raise SystemExit(f"{run} is not a finished quickstart folder: {name} is missing")
    settings = with_current_names(json.loads((run / "config.json").read_text()), RENAMED)
    model = str(run / "smoke-model") if settings["smoke"] else settings["model_name_or_path"]
    overrides = parse_overrides(args.set, renamed=RENAMED)
    shaping = {**settings, **overrides}.get("reward_shaping", QuickstartConfig.reward_shaping)
    if shaping == "potential" and set(args.rewards) - {"rm"}:
        raise SystemExit("--rewards vader/zvader score whole texts, with no reward of each prefix to shape: "
                         "run them with --set reward_shaping=none")
    ppo_overrides = parse_overrides(args.ppo_set, ZieglerPPOConfig, "--ppo-set")
    rows = []
    for reward in args.rewards:
        reward_fn = reward_function(reward, run)
        for episodes in args.episodes:
            root = Path(args.out) / f"{reward}-{episodes}"
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy(run / "queries.json", root / "queries.json")
            if not (root / "reward_model").exists():  # read-only here: link, not a copy of a whole model
                (root / "reward_model").symlink_to((run / "reward_model").resolve(), target_is_directory=True)
            cfg = QuickstartConfig(**{**settings, "smoke": False, "output_dir": str(root), **overrides,
                                      "total_episodes": episodes})
            start = time.perf_counter()
            run_ppo(cfg, model, root, reward_fn, ppo_overrides)
            seconds = time.perf_counter() - start
            results = evaluate(cfg, model, root)
            gain, half = results["score_gain"]
            win, low, high, n = results["win_rate_pi_over_rho"]
            rows.append((reward, episodes, seconds, f"{gain:+.3f} ± {half:.3f}", f"{win:.1%} ({low:.1%}–{high:.1%}, n={n})",
                         f"{results['final_kl']:.2f} / {cfg.kl_target:g}"))
    print(f"\nPPO variants of {run} (overrides: {overrides or 'none'}; PPO: {ppo_overrides or 'none'})\n")
    print("| reward | episodes | PPO seconds | score gain π − ρ (95% CI) | π preferred (Wilson 95% CI) | final KL / target |")
    print("|---|---|---|---|---|---|")
    for reward, episodes, seconds, gain, win, kl in rows:
        print(f"| {reward} | {episodes} | {seconds:.0f} | {gain} | {win} | {kl} |")


if __name__ == "__main__":
    main()
