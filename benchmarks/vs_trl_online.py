"""ZieglerPPOTrainer against TRL's RLOOTrainer at equal work, our PPO update against a bare PyTorch loop, and the CLI's
start-up time.

    python benchmarks/vs_trl_online.py --scale tiny              # vs RLOO: tiny random Llama, framework overhead
    python benchmarks/vs_trl_online.py --scale embedded          # vs RLOO: SmolLM2-135M, top 2 blocks trainable
    python benchmarks/vs_trl_online.py --bare                    # one PPO update: ZieglerPPOTrainer vs a bare loop
    python benchmarks/vs_trl_online.py --profile                 # cProfile of our updates on the tiny model
    python benchmarks/vs_trl_online.py --startup                 # `ziegler-trl` start-up (benchmarks/cli_startup.py)

Each trainer (and the bare loop) runs in its own fresh process (its peak RSS, `resource.getrusage`, is its own:
models, training and the held-out evaluation), one after the other on the same machine, fp32 on CPU (bf16=False).

Scales. `tiny`: a random 4-block Llama (hidden 64) with the embedded tokenizer, the quickstart's smoke model, all
weights trainable: the matmuls cost next to nothing, so what remains is each framework's own work (sampling loop,
Trainer steps, log-softmax over the 49k vocabulary). `embedded`: SmolLM2-135M-Instruct as the quickstart trains it,
only the top 2 blocks, final norm and heads trainable (`blocks.freeze_bottom_layers`), for both trainers.

How the knobs map (B = `--batch-size` episodes per update, m = `--micro-batch`, E = `--epochs`, G = `--generations`):

    ZieglerPPOTrainer                                  RLOOTrainer
    rollout batch B = m × gradient_accumulation_steps  generation_batch_size B (steps_per_generation = B / m)
    B distinct prompts, one completion each            B / G prompts, num_generations G completions each
    num_mini_batches 1, num_ppo_epochs E               num_iterations E
    → E optimizer steps per B episodes                 → E optimizer steps per B episodes (max_steps = E × updates)
    response_length T, fixed (EOS never stops)         max_completion_length T, generation_kwargs min_new_tokens T
    temperature 0.7, no top-k / top-p                  temperature 0.7, top_k 0, top_p 1
    reward_fn = VADER (`sentiment_reward`)              reward_funcs = the same function
    fixed β: R_t = −β·(log π − log ρ)_t, r at the end  beta = the same β: r − β·Σ_t (log π_old − log ρ)_t, i.e. eq. 2's
                                                       sum, put on the sequence (RLOO has no per-token credit)
    value head on the policy trunk (vf_coef 0.1), GAE  no value model: leave-one-out baseline over the G siblings
    clip ε 0.2, lr, AdamW, max_grad_norm 1, const. lr  epsilon 0.2, the same lr, optimizer, clipping and schedule
    no gradient checkpointing (the CPU default)        gradient_checkpointing False (TRL's default is True)

Held-out reward gain: the mean VADER score of `--eval-samples` sampled responses (temperature 0.7, length T, the
library's sampler, the same seed) to each of `--held-out` prompts kept out of training, after training minus before.
Before is the same for both trainers (same model, same seed): it is printed as a check.

`--bare` times PPO updates of ZieglerPPOTrainer against a hand-written loop doing the same math: sample with
`generate`, π + V forward, ρ forward, VADER, eq. 2's rewards, GAE, then E epochs of forward/backward/AdamW step over
micro-batches of m. The per-update time is the median over the updates after the first (the first carries one-off
set-up). `--profile` prints cProfile's top functions of our updates on the tiny model (by own time and cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ is on sys.path when a script here runs
from worker_process import run_worker

SCALES = {  # model, trainable top blocks (None: all), default updates
    "tiny": ("smoke", None, 16),
    "embedded": ("embedded", 2, 4),
}
SEED = 0


# ----- shared by every worker -----

def model_path(cli) -> str:
    name = SCALES[cli.scale][0]
    if name != "smoke":
        return name
    from ziegler_trl.quickstart.stages import smoke_model

    return smoke_model(Path(cli.output_dir))  # a fixed random init (seed 0), saved once: RLOO loads ρ from it


def prompts(tokenizer, n_train: int, n_held_out: int) -> tuple[list[str], list[str]]:
    """Sentiment-task queries from the package's passages, as text: the first n_train for training, then held out."""
    from ziegler_trl.tasks import build_queries, load_task_texts

    built = build_queries(list(load_task_texts("sentiment", "builtin")["text"]), "sentiment", tokenizer)
    texts = tokenizer.batch_decode([q.ids for q in built])
    if len(texts) < n_train + n_held_out:
        raise ValueError(f"Only {len(texts)} usable queries; need {n_train + n_held_out}")
    return texts[:n_train], texts[n_train:n_train + n_held_out]


def policy(cli, path: str, tokenizer):
    from ziegler_trl.blocks import freeze_bottom_layers
    from ziegler_trl.models import load_policy

    model = load_policy(path, tokenizer)
    top = SCALES[cli.scale][1]
    if top is not None:
        freeze_bottom_layers(model, top)
    return model


def held_out_reward(model, tokenizer, texts: list[str], cli) -> float:
    """Mean VADER score of `cli.eval_samples` sampled responses per held-out prompt (the same seed every call)."""
    import torch

    from ziegler_trl.labeling import sentiment_score
    from ziegler_trl.sampling import generate_responses
    from ziegler_trl.tasks import TaskSpec

    task = TaskSpec("held-out", 0, cli.response_length, cli.temperature, "", 0)
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    torch.manual_seed(SEED + 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        responses = generate_responses(model, ids, task, tokenizer.pad_token_id, num_return_sequences=cli.eval_samples)
    model.train(was_training)
    scores = sentiment_score(tokenizer.batch_decode(responses, skip_special_tokens=True))
    return sum(scores) / len(scores)


def update_clock(steps_per_update: int):
    """A TrainerCallback that notes the time at the end of every PPO update (every `steps_per_update` steps)."""
    from transformers import TrainerCallback

    class UpdateClock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_update == 0:
                self.marks.append(time.perf_counter())

    return UpdateClock()


def update_seconds(marks: list[float]) -> float:
    """Median time of one update, leaving out the first (one-off set-up)."""
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    return statistics.median(gaps[1:] if len(gaps) > 1 else gaps)


def report(name: str, cli, train_seconds: float, marks: list[float], steps: int, before: float, after: float) -> None:
    episodes = cli.batch_size * cli.updates
    print("RESULT " + json.dumps({
        "trainer": name, "episodes": episodes, "train_seconds": train_seconds, "optimizer_steps": steps,
        "episodes_per_second": episodes / train_seconds, "steps_per_second": steps / train_seconds,
        "update_seconds": update_seconds(marks),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        "reward_before": before, "reward_after": after, "reward_gain": after - before,
    }), flush=True)


# ----- workers -----

def run_ours(cli, profile: cProfile.Profile | None = None) -> None:
    from datasets import Dataset

    from ziegler_trl.labeling import sentiment_reward
    from ziegler_trl.models import load_tokenizer
    from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer

    path = model_path(cli)
    tokenizer = load_tokenizer(path)
    train, held_out = prompts(tokenizer, cli.train_prompts, cli.held_out)
    model = policy(cli, path, tokenizer)
    before = held_out_reward(model, tokenizer, held_out, cli)
    args = ZieglerPPOConfig(
        output_dir=f"{cli.output_dir}/ours", per_device_train_batch_size=cli.micro_batch,
        gradient_accumulation_steps=cli.batch_size // cli.micro_batch, num_mini_batches=1, num_ppo_epochs=cli.epochs,
        response_length=cli.response_length, temperature=cli.temperature, total_episodes=cli.batch_size * cli.updates,
        rollout_forward_batch_size=cli.batch_size, kl_control="fixed", init_kl_coef=cli.beta,
        learning_rate=cli.learning_rate, lr_scheduler_type="constant", max_grad_norm=1.0, reward_check=False,
        save_strategy="no", report_to=[], log_completions=False, logging_steps=cli.epochs, bf16=False, seed=SEED,
        disable_tqdm=True, dataloader_pin_memory=False,
    )
    clock = update_clock(cli.epochs)
    trainer = ZieglerPPOTrainer(model, args, train_dataset=Dataset.from_dict({"prompt": train}),
                                processing_class=tokenizer, reward_fn=sentiment_reward, callbacks=[clock])
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    trainer.train()
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - start
    after = held_out_reward(trainer.accelerator.unwrap_model(trainer.model).policy, tokenizer, held_out, cli)
    report("ours", cli, seconds, clock.marks, trainer.state.global_step, before, after)


def run_rloo(cli) -> None:
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    from ziegler_trl.labeling import sentiment_reward
    from ziegler_trl.models import load_tokenizer

    path = model_path(cli)
    tokenizer = load_tokenizer(path)
    train, held_out = prompts(tokenizer, cli.train_prompts, cli.held_out)
    model = policy(cli, path, tokenizer)
    before = held_out_reward(model, tokenizer, held_out, cli)
    args = RLOOConfig(
        output_dir=f"{cli.output_dir}/rloo", per_device_train_batch_size=cli.micro_batch,
        gradient_accumulation_steps=cli.batch_size // cli.micro_batch, generation_batch_size=cli.batch_size,
        num_generations=cli.generations, num_iterations=cli.epochs, max_completion_length=cli.response_length,
        generation_kwargs={"min_new_tokens": cli.response_length}, temperature=cli.temperature, top_k=0, top_p=1.0,
        beta=cli.beta, epsilon=0.2, learning_rate=cli.learning_rate, lr_scheduler_type="constant",
        max_grad_norm=1.0, adam_epsilon=1e-5, max_steps=cli.updates * cli.epochs, gradient_checkpointing=False,
        save_strategy="no", report_to=[],
        log_completions=False, logging_steps=cli.epochs, bf16=False, seed=SEED, disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    clock = update_clock(cli.epochs)
    trainer = RLOOTrainer(model, reward_funcs=sentiment_reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": train}), processing_class=tokenizer,
                          callbacks=[clock])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = held_out_reward(trainer.accelerator.unwrap_model(trainer.model), tokenizer, held_out, cli)
    report("rloo", cli, seconds, clock.marks, trainer.state.global_step, before, after)


def run_bare(cli) -> None:
    """The same math as one of our PPO updates (one minibatch of B, E epochs), written out in plain PyTorch."""
    import copy

    import torch
    import torch.nn.functional as F

    from ziegler_trl.labeling import sentiment_reward
    from ziegler_trl.models import load_tokenizer

    path = model_path(cli)
    tokenizer = load_tokenizer(path)
    train, held_out = prompts(tokenizer, cli.train_prompts, cli.held_out)
    torch.manual_seed(SEED)
    pi = policy(cli, path, tokenizer)
    before = held_out_reward(pi, tokenizer, held_out, cli)
    rho = copy.deepcopy(pi).eval().requires_grad_(False)
    head = torch.nn.Linear(pi.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    params = [p for p in pi.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cli.learning_rate, eps=1e-5, weight_decay=0.0)
    T, B, m, temp, pad = cli.response_length, cli.batch_size, cli.micro_batch, cli.temperature, tokenizer.pad_token_id
    encoded = [tokenizer.encode(t, add_special_tokens=False) for t in train]
    eos = pi.generation_config.eos_token_id
    pi.generation_config.eos_token_id = None  # fixed-length sampling

    def forward(model, ids, mask, positions, with_values):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=T + 1,
                    output_hidden_states=with_values, use_cache=False)
        logp = torch.gather(F.log_softmax(out.logits[:, :-1].float() / temp, -1), 2, ids[:, -T:, None]).squeeze(-1)
        values = head(out.hidden_states[-1][:, -T - 1:-1]).squeeze(-1) if with_values else None
        return logp, values

    def whiten(x, keep_mean=False):
        mean, var = x.mean(), x.var(unbiased=False)
        return (x - mean) * torch.rsqrt(var + 1e-8) + (mean if keep_mean else 0.0)

    marks = [time.perf_counter()]
    start = marks[0]
    for update in range(cli.updates):
        picked = [(update * B + i) % len(encoded) for i in range(B)]
        rows, texts = [encoded[i] for i in picked], [train[i] for i in picked]
        width = max(map(len, rows))
        query = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        query_mask = (torch.arange(width)[None] >= torch.tensor([width - len(r) for r in rows])[:, None]).long()
        with torch.no_grad():
            out = pi.generate(input_ids=query, attention_mask=query_mask, do_sample=True, temperature=temp, top_k=0,
                              top_p=1.0, max_new_tokens=T, min_new_tokens=T, pad_token_id=pad)
            ids = out
            mask = torch.cat([query_mask, torch.ones(B, T, dtype=torch.long)], 1)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            old_logp, old_values = forward(pi, ids, mask, positions, True)
            ref_logp, _ = forward(rho, ids, mask, positions, False)
            completions = tokenizer.batch_decode(ids[:, -T:], skip_special_tokens=True)
            scores = torch.tensor(sentiment_reward(texts, completions))
            rewards = -cli.beta * (old_logp - ref_logp)
            rewards[:, -1] += scores
        for _ in range(cli.epochs):
            order = torch.randperm(B)
            with torch.no_grad():  # the whole batch is one minibatch
                r, v = whiten(rewards[order], keep_mean=True), old_values[order]
                advantages, last = torch.zeros_like(r), torch.zeros(B)
                for t in reversed(range(T)):
                    next_value = v[:, t + 1] if t + 1 < T else torch.zeros(B)
                    last = r[:, t] + next_value - v[:, t] + cli.lam * last
                    advantages[:, t] = last
                returns, advantages = advantages + v, whiten(advantages)
            for part in range(0, B, m):
                rows_ = order[part:part + m]
                logp, values = forward(pi, ids[rows_], mask[rows_], positions[rows_], True)
                ratio = torch.exp(logp - old_logp[rows_])
                adv = advantages[part:part + m]
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
                ret, ov = returns[part:part + m], old_values[rows_]
                vf = 0.5 * torch.max((values - ret) ** 2, (values.clamp(ov - 0.2, ov + 0.2) - ret) ** 2).mean()
                ((pg + 0.1 * vf) / (B // m)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
        marks.append(time.perf_counter())
    seconds = time.perf_counter() - start
    pi.generation_config.eos_token_id = eos
    after = held_out_reward(pi, tokenizer, held_out, cli)
    report("bare", cli, seconds, marks, cli.updates * cli.epochs, before, after)


def run_profile(cli) -> None:
    profile = cProfile.Profile()
    run_ours(cli, profile)
    for key in ("tottime", "cumulative"):
        print(f"\n--- our {cli.updates} PPO updates on the {cli.scale} model, top {cli.profile_top} by {key} ---")
        pstats.Stats(profile, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(cli.profile_top)


WORKERS = {"ours": run_ours, "rloo": run_rloo, "bare": run_bare}


# ----- the parent -----

def spawn(name: str, cli) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    forwarded = [a for a in sys.argv[1:] if a not in ("--bare", "--profile", "--startup")]
    return run_worker([sys.executable, __file__, *forwarded, "--worker", name], env, name)


def row(label: str, values: list[float], fmt: str, ratio: bool = True) -> str:
    spec = f">+16{fmt[1:]}" if fmt.startswith("+") else f">16{fmt}"  # sign before width
    cells = "".join(f"{v:{spec}}" for v in values)
    return f"{label:<30}{cells}" + (f"{values[0] / values[1]:>12.2f}x" if ratio and values[1] else "")


def compare_rloo(cli) -> None:
    results = {name: spawn(name, cli) for name in ("ours", "rloo")}
    ours, rloo = results["ours"], results["rloo"]
    print(f"\nscale={cli.scale} episodes={ours['episodes']} (batch {cli.batch_size} × {cli.updates} updates) "
          f"micro_batch={cli.micro_batch} epochs={cli.epochs} rloo_generations={cli.generations} "
          f"response_length={cli.response_length} beta={cli.beta} lr={cli.learning_rate} fp32 CPU "
          f"({os.cpu_count()} CPUs, shared)")
    print(f"{'':<30}{'ZieglerPPO':>16}{'TRL RLOO':>16}{'ours/RLOO':>13}")
    print(row("episodes/s", [ours["episodes_per_second"], rloo["episodes_per_second"]], ".3f"))
    print(row("optimizer steps/s", [ours["steps_per_second"], rloo["steps_per_second"]], ".3f"))
    print(row("s per update (median)", [ours["update_seconds"], rloo["update_seconds"]], ".3f"))
    print(row("peak RSS (MiB)", [ours["peak_rss_mib"], rloo["peak_rss_mib"]], ".0f"))
    print(row("held-out VADER before", [ours["reward_before"], rloo["reward_before"]], ".4f", ratio=False))
    print(row("held-out VADER after", [ours["reward_after"], rloo["reward_after"]], ".4f", ratio=False))
    print(row("held-out gain", [ours["reward_gain"], rloo["reward_gain"]], "+.4f", ratio=False)
          + f"{ours['reward_gain'] - rloo['reward_gain']:>+12.4f} (ours − RLOO)")
    print("RESULTS " + json.dumps(results))


def compare_bare(cli) -> None:
    results = {name: spawn(name, cli) for name in ("ours", "bare")}
    ours, bare = results["ours"], results["bare"]
    print(f"\nscale={cli.scale} one PPO update: batch {cli.batch_size}, micro_batch {cli.micro_batch}, "
          f"{cli.epochs} epochs, response_length {cli.response_length}; median of {cli.updates - 1} updates after the "
          f"first, fp32 CPU ({os.cpu_count()} CPUs, shared)")
    print(f"{'':<30}{'ZieglerPPO':>16}{'bare loop':>16}{'ours/bare':>13}")
    print(row("s per PPO update", [ours["update_seconds"], bare["update_seconds"]], ".4f"))
    print(row("episodes/s (whole run)", [ours["episodes_per_second"], bare["episodes_per_second"]], ".3f"))
    print(row("peak RSS (MiB)", [ours["peak_rss_mib"], bare["peak_rss_mib"]], ".0f"))
    print("RESULTS " + json.dumps(results))


def startup(cli) -> None:
    from cli_startup import print_startup, startup_seconds

    print_startup(startup_seconds(cli.startup_runs, every_command=False), cli.startup_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--bare", action="store_true", help="time our PPO update against a bare PyTorch loop")
    parser.add_argument("--profile", action="store_true", help="cProfile our updates (in this process)")
    parser.add_argument("--startup", action="store_true", help="time the CLI's start-up (benchmarks/cli_startup.py)")
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="episodes per update (B)")
    parser.add_argument("--micro-batch", type=int, default=8, help="episodes per forward/backward (m)")
    parser.add_argument("--generations", type=int, default=4, help="RLOO's completions per prompt (G)")
    parser.add_argument("--epochs", type=int, default=4, help="passes per batch: num_ppo_epochs = num_iterations")
    parser.add_argument("--updates", type=int, help="batches of B episodes (default: 16 tiny, 4 embedded)")
    parser.add_argument("--response-length", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--beta", type=float, default=0.15, help="fixed KL coefficient β of both (the paper: 0.15)")
    parser.add_argument("--learning-rate", type=float, default=1.3e-4, help="the quickstart's policy rate")
    parser.add_argument("--lam", type=float, default=0.95, help="GAE λ of ours and the bare loop (γ = 1)")
    parser.add_argument("--train-prompts", type=int, default=128)
    parser.add_argument("--held-out", type=int, default=32, help="held-out prompts")
    parser.add_argument("--eval-samples", type=int, default=2, help="sampled responses per held-out prompt")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--output-dir", default=os.path.join(tempfile.gettempdir(), "vs_trl_online"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    cli = parser.parse_args()
    cli.updates = cli.updates or SCALES[cli.scale][2]
    if cli.batch_size % cli.micro_batch or cli.batch_size % cli.generations:
        parser.error("--batch-size must be a multiple of --micro-batch and of --generations")
    if cli.worker:
        return WORKERS[cli.worker](cli)
    if cli.profile:
        return run_profile(cli)
    if cli.startup:
        return startup(cli)
    return compare_bare(cli) if cli.bare else compare_rloo(cli)


if __name__ == "__main__":
    main()
