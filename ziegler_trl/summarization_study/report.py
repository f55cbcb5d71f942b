"""The study's tables, from the project's own eval commands on the saved samples, and its report.

`table4.md` is `ziegler-trl eval summarization` (lead-3, the zero-shot ρ, and π of each PPO arm), `copying.md` and
`novelty.png` are `ziegler-trl eval copying` (the authors' TL;DRs too), all on the held-out posts as the policies read
them. The labeler's view (its score and its 2-way preference of each π over ρ), the reward model's accuracy and PPO's
KL come from the study's own files; everything goes to `results.json` and `summarization.md`.
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
from .stages import DIRECT_REWARD, HELD_OUT, POSTS, PPO_LOG, REWARD_MODEL, ROWS, SAMPLES

COPYING_KEYS = ("novel_1gram", "novel_2gram", "novel_3gram", "novel_4gram", "novel_sentences", "copied_whole",
                "first3_copied", "first3_copied_preamble", "first3_copied_no_preamble", "repeated_3gram")
ARMS = {"rm": "the reward model", "direct": "the labeler's score"}  # PPO's two arms, by what they train on


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


def ppo_summary(cfg: SummarizationStudyConfig, log: Path) -> dict:
    """Final KL and the reward of the rollouts at the first and last update, from a PPO log."""
    updates = [e for e in json.loads(log.read_text()) if "objective/kl" in e]
    return {"final_kl": final_kl(updates, cfg.policy_batch_size), "first_score": updates[0]["objective/scores"],
            "final_score": updates[-1]["objective/scores"], "final_kl_coef": updates[-1]["objective/kl_coef"],
            "final_valid_fraction": updates[-1]["objective/valid_fraction"], "updates": len(updates)}


def write_report(cfg: SummarizationStudyConfig, root: Path, invocations: Sequence[dict], seconds: float) -> Path:
    """The tables, `results.json` and `summarization.md`; `invocations` are the commits and commands that built the
    folder (`provenance.record_invocation`)."""
    held_out = root / HELD_OUT
    files = {ROWS["rho"]: root / SAMPLES["rm"], **{ROWS[arm]: root / SAMPLES[arm] for arm in ARMS}}
    rows = [f"{name}={path}" for name, path in files.items()]
    run_eval_command(summarization, ["--task", "tldr", "--dataset_name", str(held_out), "--rows", "lead-3", *rows,
                                     "--bootstrap", "1000", "--seed", str(cfg.seed), "--out", str(root / "table4.md")])
    run_eval_command(copying, ["--task", "tldr", "--dataset_name", str(held_out), "--rows", "reference", "lead-3",
                               *rows, "--seed", str(cfg.seed), "--out", str(root / "copying.md"),
                               "--plot", str(root / "novelty.png")])

    posts = json.loads((root / POSTS).read_text(encoding="utf-8"))["held_out"]
    sources, references = [p["post"] for p in posts], [p["summary"] for p in posts]
    summaries = {"lead-3": lead3_summaries(sources)}
    summaries.update({name: load_saved_summaries(path, name) for name, path in files.items()})
    for name, s in summaries.items():
        if s.indices != list(range(len(posts))):
            raise UserInputError(f"{files[name]} does not hold one {name!r} summary per held-out post: remove it and "
                                 "rerun the study to redo its samples stage")
    table4 = {name: rouge(s.summaries, references) for name, s in summaries.items()}
    copies = {"reference": copy_table(sources, references, "tldr")}
    copies.update({name: copy_table(sources, s.summaries, "tldr") for name, s in summaries.items()})
    labeler = {name: rouge_avg(s.summaries, references) for name, s in summaries.items()}
    rho = ROWS["rho"]
    preference = {ROWS[arm]: labeler_preference(labeler[ROWS[arm]], labeler[rho]) for arm in ARMS}
    valid = {name: sum(summaries[name].valid) / len(posts) for name in files}
    ppo = {ROWS[arm]: ppo_summary(cfg, root / PPO_LOG[arm]) for arm in ARMS}
    reward_metrics = json.loads((root / REWARD_MODEL / "reward_metrics.json").read_text())
    direct = json.loads((root / DIRECT_REWARD).read_text())
    stage_seconds = json.loads((root / "stages.json").read_text())
    compute = sum(stage_seconds.values())
    device = inference_device()
    machine = f"{device.type}, {torch.get_num_threads()} torch threads" if device.type == "cpu" else str(device)
    results = {
        "invocations": list(invocations), "machine": machine, "stage_seconds": stage_seconds,
        "compute_seconds": compute, "invocation_seconds": seconds, "held_out_posts": len(posts),
        "rouge": table4, "copying": {k: {key: v[key] for key in ("n", "preamble_rate", *COPYING_KEYS)}
                                     for k, v in copies.items()},
        "labeler_score": {name: sum(v) / len(v) for name, v in labeler.items()}, "labeler_preference": preference,
        "valid_fraction": valid, "reward_model": reward_metrics, "direct_reward": direct, "ppo": ppo,
        "settings": {k: v for k, v in vars(cfg).items() if k != "output_dir"},
    }
    (root / "results.json").write_text(json.dumps(results, indent=2))

    accuracy = f"{reward_metrics['eval_accuracy']:.1%}" if reward_metrics.get("eval_accuracy") is not None else "–"
    arm_rows = "\n".join(
        f"| {ROWS[arm]}: PPO on {description} | {ppo[ROWS[arm]]['first_score']:+.3f} → "
        f"{ppo[ROWS[arm]]['final_score']:+.3f} | {ppo[ROWS[arm]]['final_kl']:.2f} | {valid[ROWS[arm]]:.0%} | "
        f"{results['labeler_score'][ROWS[arm]]:.2f} | {preference[ROWS[arm]]['win_rate']:.1%} "
        f"({preference[ROWS[arm]]['low']:.1%}–{preference[ROWS[arm]]['high']:.1%}) |"
        for arm, description in ARMS.items())

    def pct(key: str, name: str) -> str:
        return f"{100 * copies[name][key]:.1f}%"

    def copier(name: str) -> str:
        return (f"{name}: novel 2-grams {pct('novel_2gram', rho)} → {pct('novel_2gram', name)}, summaries made only of "
                f"sentences copied from the post {pct('copied_whole', rho)} → {pct('copied_whole', name)}, first 3 "
                f"words copied {pct('first3_copied', rho)} → {pct('first3_copied', name)}")

    model = "a tiny random Llama with the embedded tokenizer (smoke)" if cfg.model_name_or_path == "smoke" else (
        cfg.model_name_or_path)
    text = f"""# Summarization in miniature: does π become a copier? ({cfg.scale})

The paper's TL;DR experiment (§3.2, Tables 4 and 7) at a small scale: ρ = `{model}` summarises Reddit posts
zero-shot ("…\\n\\nTL;DR:"); a simulated labeler picks the best of {cfg.k} samples of ρ by ROUGE against the post
author's own TL;DR (R-AVG, `ziegler_trl.summarization_study.labeler`); a reward model learns those picks; PPO trains π
against it with the paper's fixed β = {cfg.kl_coef:g} (row RL). A second π trains on the labeler's own score,
standardised on ρ's samples (row RL-direct, Figure 2's direct arm): what the labeler's preference does to a policy
when no reward model stands between. ρ and both π summarise {len(posts)} held-out posts, and the project's eval
commands rebuild the Table-4 rows and the copying table from the saved summaries.

{provenance_lines(invocations)}
- Wall time: {compute / 60:.1f} min of stages ({", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items())});
  on {machine}.
- Data: `{cfg.dataset_name}`, the first {cfg.posts} posts, each cut to {cfg.query_length} tokens (the paper: 500);
  {len(posts)} held out. Responses: the paper's 75 tokens, cut after a newline at token 55 or later (else invalid, −1
  in PPO), or at the model's end of turn.

## The labeler, the reward model, PPO

Comparisons labeled / trained on: {cfg.num_comparisons} / {reward_metrics["num_train"]} (the labeler skips a tied top
score). Reward model held-out best-of-{cfg.k} accuracy: {accuracy} on {reward_metrics["num_eval"]} (chance
{1 / cfg.k:.0%}). PPO: {cfg.total_episodes} episodes per arm, β {cfg.kl_coef:g} fixed, lr {cfg.policy_learning_rate:g},
top {cfg.policy_trainable_top_layers} blocks. The labeler's score of ρ's labeled samples: mean {direct["mean"]:.2f},
std {direct["std"]:.2f}. ρ's held-out summaries: {valid[rho]:.0%} valid, labeler's score
{results["labeler_score"][rho]:.2f} (lead-3: {results["labeler_score"]["lead-3"]:.2f}).

| policy | its reward on rollouts, first → last update | final KL(π‖ρ), nats | valid on held-out | labeler's score (R-AVG) | labeler prefers it over ρ (Wilson 95%) |
|---|---|---|---|---|---|
{arm_rows}

The labeler's 2-way preference compares each held-out post's two summaries by its score; a tie counts half.

## Table 4 rows (`ziegler-trl eval summarization`)

{(root / "table4.md").read_text().strip()}

## Copying (`ziegler-trl eval copying`)

{(root / "copying.md").read_text().strip()}

![novel n-grams and sentences](novelty.png)

Copier check, ρ → π. {copier(ROWS["rm"])}. {copier(ROWS["direct"])}. Lead-3: {pct("novel_2gram", "lead-3")} novel
2-grams; the authors' TL;DRs: {pct("novel_2gram", "reference")}.

Settings: {json.dumps(results["settings"])}
"""
    path = root / "summarization.md"
    path.write_text(text)
    return path
