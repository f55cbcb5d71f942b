"""The study's tables, from the project's own eval commands on the saved samples, and its report.

`table4.md` is `ziegler-trl eval summarization` (lead-3, the zero-shot ρ, the RL π), `copying.md` and `novelty.png`
are `ziegler-trl eval copying` (reference, lead-3, ρ, π), all on the held-out posts as the policies read them. The
labeler's view (its score and its 2-way preference of π over ρ), the reward model's accuracy and PPO's KL come from
the study's own files; everything goes to `results.json` and `summarization.md`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import UserInputError
from ..evaluation.commands import copying, summarization
from ..evaluation.copying import copy_table
from ..evaluation.preference import wilson_interval
from ..evaluation.rouge_scores import rouge
from ..evaluation.summaries import lead3_summaries, load_saved_summaries
from ..models import inference_device
from ..provenance import provenance_lines
from ..quickstart.report import final_kl
from .config import SummarizationStudyConfig
from .labeler import rouge_avg
from .stages import HELD_OUT, POSTS, PPO_LOG, REWARD_MODEL, ROWS, SAMPLES

COPYING_KEYS = ("novel_1gram", "novel_2gram", "novel_3gram", "novel_4gram", "novel_sentences", "copied_whole",
                "first3_copied", "first3_copied_preamble", "first3_copied_no_preamble", "repeated_3gram")


def run_eval_command(module, argv: list[str]) -> None:
    """One of the project's eval commands, as a user would run it; its failure is the study's."""
    status = module.main(argv, prog=f"ziegler-trl eval {module.__name__.rsplit('.', 1)[-1]}")
    if status != 0:
        raise RuntimeError(f"ziegler-trl eval {shlex.join(argv)} exited with status {status}")


def labeler_preference(pi: Sequence[float], rho: Sequence[float]) -> dict:
    """The labeler's 2-way choice on each held-out post between π's and ρ's summary: the higher score wins, a tie
    counts half (the labeler has no preference there)."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(pi, rho))
    rate = wins / len(pi)
    low, high = wilson_interval(rate, len(pi))
    return {"win_rate": rate, "low": low, "high": high, "n": len(pi), "ties": sum(a == b for a, b in zip(pi, rho))}


def write_report(cfg: SummarizationStudyConfig, root: Path, invocations: Sequence[dict], seconds: float) -> Path:
    """The tables, `results.json` and `summarization.md`; `invocations` are the commits and commands that built the
    folder (`provenance.record_invocation`)."""
    held_out = root / HELD_OUT
    samples = root / SAMPLES
    rows = [f"{name}={samples}" for name in ROWS.values()]
    run_eval_command(summarization, ["--task", "tldr", "--dataset_name", str(held_out), "--rows", "lead-3", *rows,
                                     "--bootstrap", "1000", "--seed", str(cfg.seed), "--out", str(root / "table4.md")])
    run_eval_command(copying, ["--task", "tldr", "--dataset_name", str(held_out), "--rows", "reference", "lead-3",
                               *rows, "--seed", str(cfg.seed), "--out", str(root / "copying.md"),
                               "--plot", str(root / "novelty.png")])

    posts = json.loads((root / POSTS).read_text())["held_out"]
    sources, references = [p["post"] for p in posts], [p["summary"] for p in posts]
    summaries = {"lead-3": lead3_summaries(sources)}
    summaries.update({name: load_saved_summaries(samples, name) for name in ROWS.values()})
    if any(s.indices != list(range(len(posts))) for s in summaries.values()):
        raise UserInputError(f"{samples} does not hold one summary per held-out post: rerun the study's samples stage")
    table4 = {name: rouge(s.summaries, references) for name, s in summaries.items()}
    copies = {"reference": copy_table(sources, references, "tldr")}
    copies.update({name: copy_table(sources, s.summaries, "tldr") for name, s in summaries.items()})
    labeler = {name: rouge_avg(s.summaries, references) for name, s in summaries.items()}
    rho, pi = ROWS["rho"], ROWS["pi"]
    preference = labeler_preference(labeler[pi], labeler[rho])
    valid = {name: sum(summaries[name].valid) / len(posts) for name in (rho, pi)}

    updates = [e for e in json.loads((root / PPO_LOG).read_text()) if "objective/kl" in e]
    reward_metrics = json.loads((root / REWARD_MODEL / "reward_metrics.json").read_text())
    stage_seconds = json.loads((root / "stages.json").read_text())
    compute = sum(stage_seconds.values())
    device = inference_device()
    machine = f"{device.type}, {torch.get_num_threads()} torch threads" if device.type == "cpu" else str(device)
    ppo = {"final_kl": final_kl(updates, cfg.policy_batch_size),
           "first_score": updates[0]["objective/scores"], "final_score": updates[-1]["objective/scores"],
           "final_valid_fraction": updates[-1]["objective/valid_fraction"], "updates": len(updates)}
    results = {
        "invocations": list(invocations), "machine": machine, "stage_seconds": stage_seconds,
        "compute_seconds": compute, "invocation_seconds": seconds, "held_out_posts": len(posts),
        "rouge": table4, "copying": {k: {key: v[key] for key in ("n", "preamble_rate", *COPYING_KEYS)}
                                     for k, v in copies.items()},
        "labeler_score": {name: sum(v) / len(v) for name, v in labeler.items()}, "labeler_preference": preference,
        "valid_fraction": valid, "reward_model": reward_metrics, "ppo": ppo,
        "settings": {k: v for k, v in vars(cfg).items() if k != "output_dir"},
    }
    (root / "results.json").write_text(json.dumps(results, indent=2))

    accuracy = f"{reward_metrics['eval_accuracy']:.1%}" if reward_metrics.get("eval_accuracy") is not None else "–"

    def pct(key: str, name: str) -> str:
        return f"{100 * copies[name][key]:.1f}%"

    model = "a tiny random Llama with the embedded tokenizer (smoke)" if cfg.model_name_or_path == "smoke" else (
        cfg.model_name_or_path)
    text = f"""# Summarization in miniature: does π become a copier? ({cfg.scale})

The paper's TL;DR experiment (§3.2, Tables 4 and 7) at a small scale: ρ = `{model}` summarises Reddit posts
zero-shot ("…\\n\\nTL;DR:"); a simulated labeler picks the best of {cfg.k} samples of ρ by ROUGE against the post
author's own TL;DR (R-AVG, `ziegler_trl.summarization_study.labeler`); a reward model learns those picks; PPO trains π
against it with the paper's fixed β = {cfg.kl_coef:g}. ρ and π then summarise {len(posts)} held-out posts, and the
project's eval commands rebuild the Table-4 rows and the copying table from the saved summaries.

{provenance_lines(invocations)}
- Wall time: {compute / 60:.1f} min of stages ({", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items())});
  on {machine}.
- Data: `{cfg.dataset_name}`, the first {cfg.posts} posts, each cut to {cfg.query_length} tokens (the paper: 500);
  {len(posts)} held out. Responses: the paper's 75 tokens, cut after a newline at token 55 or later (else invalid, −1
  in PPO), or at the model's end of turn.

## The labeler, the reward model, PPO

| | value |
|---|---|
| comparisons labeled / trained on | {cfg.num_comparisons} / {reward_metrics["num_train"]} (ties of the top score skipped) |
| reward model held-out best-of-{cfg.k} accuracy | {accuracy} on {reward_metrics["num_eval"]} (chance {1 / cfg.k:.0%}) |
| PPO | {cfg.total_episodes} episodes in {len(updates)} updates, β {cfg.kl_coef:g} fixed, lr {cfg.policy_learning_rate:g}, top {cfg.policy_trainable_top_layers} blocks |
| reward-model score of π's rollouts, first → last update | {ppo["first_score"]:+.3f} → {ppo["final_score"]:+.3f} |
| final KL(π‖ρ) per response | {ppo["final_kl"]:.2f} nats |
| valid summaries on held-out posts, ρ → π | {valid[rho]:.0%} → {valid[pi]:.0%} |
| labeler's score (R-AVG vs the author's TL;DR), lead-3 / ρ / π | {results["labeler_score"]["lead-3"]:.2f} / {results["labeler_score"][rho]:.2f} / {results["labeler_score"][pi]:.2f} |
| labeler prefers π over ρ (2-way, ties half) | {preference["win_rate"]:.1%} (Wilson 95% {preference["low"]:.1%}–{preference["high"]:.1%}, n = {preference["n"]}, {preference["ties"]} ties) |

## Table 4 rows (`ziegler-trl eval summarization`)

{(root / "table4.md").read_text().strip()}

## Copying (`ziegler-trl eval copying`)

{(root / "copying.md").read_text().strip()}

![novel n-grams and sentences](novelty.png)

Copier check, ρ → π: novel 2-grams {pct("novel_2gram", rho)} → {pct("novel_2gram", pi)}, summaries made only of
sentences copied from the post {pct("copied_whole", rho)} → {pct("copied_whole", pi)}, first 3 words copied
{pct("first3_copied", rho)} → {pct("first3_copied", pi)} (lead-3: {pct("novel_2gram", "lead-3")} novel 2-grams; the
authors' TL;DRs: {pct("novel_2gram", "reference")}).

Settings: {json.dumps(results["settings"])}
"""
    path = root / "summarization.md"
    path.write_text(text)
    return path
