"""PPO speed and memory of ZieglerPPOTrainer variants: value head on the policy trunk (the paper's code) vs a separate
value model, full fine-tuning vs LoRA; on CPU or GPU, with a time breakdown and, on GPUs, model FLOPs utilisation.

Each variant runs in a fresh process (so its peak memory is its own) on the same queries, lengths and batch:
`--warmup-updates` PPO updates are run first and not timed (allocator warm-up, kernel selection), then
`--updates` timed ones. Reported per variant: episodes/s; tokens/s (query + response tokens through the update) and
sampled response tokens/s; the share of time in sampling (`generate`), the other rollout forwards (π with values, ρ,
reward model) and the PPO optimisation epochs; peak RSS (includes loading) and, on CUDA, peak allocated GPU memory;
on CUDA also MFU = model FLOPs / time / peak bf16 dense FLOP/s of the GPU.

Model FLOPs per update (B episodes, query Q, response R, T = Q + R, N = parameters of the transformer blocks,
H = d·V of the LM head, L layers, d width): a forward over t tokens costs 2·N·t + 4·L·d·t·T (attention) plus 2·H per
position whose logits are computed; backward twice the forward (full fine-tuning) or once (LoRA: input gradients
only). Sampling = T forward tokens and R logit positions; rollout = π (T tokens, R+1 logits), ρ (same), reward
(T tokens), separate value trunk (T); training = num_ppo_epochs × (π and value trunk forward + backward).

    python benchmarks/ppo_variants.py --model embedded --batch-size 8 --updates 2                  # CPU, fp32
    python benchmarks/ppo_variants.py --model embedded --random-arch gpt2-124m --bf16 \\
        --batch-size 512 --micro-batch 64 --updates 3                                            # GPU, 124M, bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

# benchmarks/ is on sys.path when a script here runs
from worker_process import run_worker

VARIANTS = ("shared", "lora", "separate_value")
PEAK_BF16_DENSE = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # vendor figures, dense (no sparsity)


def synthetic_texts(n: int) -> list[str]:
    """Plain sentences, long enough to fill a 64-token sentiment query after its first '.'."""
    return ["Intro. " + " ".join(f"On day {i + j} the road was long and dusty, and we walked on." for j in range(10))
            for i in range(n)]


def model_folder(cli, workdir: str) -> str:
    """The model to train: `--model` itself, or random weights of `--random-arch` with its tokenizer."""
    if cli.random_arch == "none":
        return cli.model
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config

    from ziegler_trl.models import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(cli.model)
    if cli.random_arch == "gpt2-124m":  # GPT-2 small's shape with this tokenizer's vocabulary
        config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=len(tokenizer),
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    else:
        config = AutoConfig.from_pretrained(resolve_model_path(cli.model))
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    folder = os.path.join(workdir, f"random-{cli.random_arch}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def model_shape(policy) -> dict[str, int]:
    config = policy.config.get_text_config()
    embeddings = {id(p) for p in policy.get_input_embeddings().parameters()}
    embeddings |= {id(p) for p in policy.get_output_embeddings().parameters()}
    positions = getattr(getattr(policy, "transformer", None), "wpe", None)  # GPT-2's learned positions
    if positions is not None:
        embeddings |= {id(p) for p in positions.parameters()}
    blocks = sum(p.numel() for p in policy.parameters() if id(p) not in embeddings)
    return {"blocks": blocks, "layers": config.num_hidden_layers, "width": config.hidden_size,
            "vocab": policy.get_output_embeddings().weight.shape[0]}


def flops_per_update(shape: dict[str, int], batch: int, query: int, response: int, epochs: int, variant: str) -> dict:
    n, layers, d, vocab = shape["blocks"], shape["layers"], shape["width"], shape["vocab"]
    total = query + response

    def forward(tokens: int, logit_positions: int) -> float:
        return batch * (2 * n * tokens + 4 * layers * d * tokens * total + 2 * d * vocab * logit_positions)

    backward_factor = 1 if variant == "lora" else 2
    sampling = forward(total, response)
    rollout = 2 * forward(total, response + 1) + forward(total, 0)
    train_one = forward(total, response + 1)
    if variant == "separate_value":
        rollout += forward(total, 0)
        train_one += forward(total, 0)
    training = epochs * train_one * (1 + backward_factor)
    return {"sampling": sampling, "rollout_forwards": rollout, "training": training,
            "total": sampling + rollout + training}


def run_variant(cli) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM

    import ziegler_trl.ppo.rollout as rollout_module
    import ziegler_trl.ppo.trainer as trainer_module
    from ziegler_trl.blocks import freeze_bottom_layers
    from ziegler_trl.models import load_policy, load_tokenizer, resolve_model_path
    from ziegler_trl.ppo import ZieglerPPOConfig, ZieglerPPOTrainer
    from ziegler_trl.tasks import build_queries

    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    timings: dict[str, list[float]] = {"generate": [], "rollout": [], "rollout_start": []}
    generate, collect = rollout_module.generate_responses, trainer_module.collect_rollout

    def timed_generate(*args, **kwargs):
        sync()
        start = time.perf_counter()
        out = generate(*args, **kwargs)
        sync()
        timings["generate"].append(time.perf_counter() - start)
        return out

    def timed_collect(*args, **kwargs):
        sync()
        start = time.perf_counter()
        timings["rollout_start"].append(start)
        out = collect(*args, **kwargs)
        sync()
        timings["rollout"].append(time.perf_counter() - start)
        return out

    rollout_module.generate_responses = timed_generate
    trainer_module.collect_rollout = timed_collect
    # The shape without weights, before the config turns ZeRO-3 init on (the trainer's own copies are shards then).
    with torch.device("meta"):
        shape_model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_path(cli.folder)))
    shape = model_shape(shape_model)
    tokenizer = load_tokenizer(cli.folder)
    updates = cli.warmup_updates + cli.updates
    queries = build_queries(synthetic_texts(cli.batch_size * updates), "sentiment", tokenizer)
    prompts = Dataset.from_dict({"prompt": tokenizer.batch_decode([q.ids for q in queries])})
    query_tokens = sum(len(tokenizer(p)["input_ids"]) for p in prompts["prompt"]) / len(prompts)
    micro = min(cli.micro_batch, cli.batch_size)
    args = ZieglerPPOConfig(
        output_dir=os.path.join(cli.workdir, cli.variant), per_device_train_batch_size=micro,
        gradient_accumulation_steps=cli.batch_size // micro, num_mini_batches=1, num_ppo_epochs=cli.ppo_epochs,
        response_length=cli.response_length, temperature=0.7, total_episodes=cli.batch_size * updates,
        rollout_forward_batch_size=micro, save_strategy="no", report_to=[], log_completions=False,
        bf16=cli.bf16, seed=0, disable_tqdm=True, logging_steps=10**6, cache_frozen_blocks=not cli.no_block_cache,
    )
    peft_config = None
    if cli.variant == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    # Paths, not model objects: under ZeRO-3 the trainer loads each model itself (partitioned ρ cannot be copied).
    policy = cli.folder
    if cli.trainable_top_layers is not None:
        policy = load_policy(cli.folder, tokenizer)
        freeze_bottom_layers(policy, cli.trainable_top_layers)
    trainer = ZieglerPPOTrainer(
        policy, args, train_dataset=prompts, processing_class=tokenizer, reward_model=cli.folder,
        peft_config=peft_config, value_model=cli.folder if cli.variant == "separate_value" else None,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    sync()
    end = time.perf_counter()

    timed = slice(cli.warmup_updates, None)
    seconds = end - timings["rollout_start"][cli.warmup_updates]
    gen, rollout = sum(timings["generate"][timed]), sum(timings["rollout"][timed])
    episodes = cli.batch_size * cli.updates
    tokens_per_episode = query_tokens + cli.response_length
    flops = flops_per_update(shape, cli.batch_size, round(query_tokens), cli.response_length, cli.ppo_epochs,
                             cli.variant)
    result = {
        "variant": cli.variant, "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": "bf16 mixed" if cli.bf16 else "fp32", "params_blocks": shape["blocks"],
        "params_total": sum(p.numel() for p in shape_model.parameters()),
        "trainable_params": sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters() if p.requires_grad),
        "distributed": str(trainer.accelerator.distributed_type),
        "episodes": episodes, "seconds": seconds, "episodes_per_second": episodes / seconds,
        "tokens_per_second": episodes * tokens_per_episode / seconds,
        "sampled_tokens_per_second": episodes * cli.response_length / seconds,
        "share_generate": gen / seconds, "share_rollout_forwards": (rollout - gen) / seconds,
        "share_ppo_epochs": (seconds - rollout) / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mean_query_tokens": query_tokens, "final_kl_coef": trainer.kl_controller.value,
        "cached_frozen_blocks": trainer.block_cache.policy_blocks if trainer.block_cache else 0,
    }
    if cuda:
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        peak = next((v for k, v in PEAK_BF16_DENSE.items() if k in result["device"]), None)
        achieved = flops["total"] * cli.updates / seconds
        result["achieved_tflops"] = achieved / 1e12
        result["mfu"] = achieved / peak if peak and cli.bf16 else None
        result["mfu_sampling"] = (flops["sampling"] * cli.updates / gen) / peak if peak and cli.bf16 else None
        result["mfu_ppo_epochs"] = (
            (flops["training"] * cli.updates / (seconds - rollout)) / peak if peak and cli.bf16 else None
        )
    if cli.save_check:  # the gathered weights must come back whole (ZeRO-3 / FSDP hand _save a state dict)
        final = os.path.join(cli.workdir, cli.variant, "final")
        trainer.save_model(final)
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process and cli.variant != "lora":
            saved = load_policy(final, tokenizer)
            same = all(a.shape == b.shape for a, b in zip(saved.parameters(), shape_model.parameters()))
            result["saved_policy_ok"] = same and all(bool(torch.isfinite(p).all()) for p in saved.parameters())
            result["saved_files"] = sorted(os.listdir(final))
    return result


def spawn(cli, variant: str, folder: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--folder", folder, "--workdir", cli.workdir]
    for name in ("batch_size", "micro_batch", "updates", "warmup_updates", "response_length", "ppo_epochs"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(cli, name))]
    cmd += ["--bf16"] if cli.bf16 else []
    cmd += ["--no-block-cache"] if cli.no_block_cache else []
    if cli.trainable_top_layers is not None:
        cmd += ["--trainable-top-layers", str(cli.trainable_top_layers)]
    return run_worker(cmd, dict(os.environ, HF_HUB_OFFLINE="1"), f"variant {variant}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="model (and tokenizer) folder, or 'embedded'")
    parser.add_argument("--random-arch", choices=["none", "same", "gpt2-124m"], default="none",
                        help="random weights: 'same' architecture as --model, or GPT-2 small's shape")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes per PPO update")
    parser.add_argument("--micro-batch", type=int, default=8, help="episodes per forward/backward micro-batch")
    parser.add_argument("--updates", type=int, default=2, help="timed PPO updates")
    parser.add_argument("--warmup-updates", type=int, default=1, help="untimed PPO updates first")
    parser.add_argument("--response-length", type=int, default=24)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs; slow on most CPUs)")
    parser.add_argument("--trainable-top-layers", type=int, default=None,
                        help="train only the top N blocks (freeze_bottom_layers; not under ZeRO-3). MFU still "
                             "counts full fine-tuning's FLOPs")
    parser.add_argument("--no-block-cache", action="store_true",
                        help="cache_frozen_blocks=False: rerun the frozen bottom blocks in every PPO epoch")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json-out", default=None, help="also write the results here")
    parser.add_argument("--save-check", action="store_true", help="save the trained policy and reload it (worker)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.worker:
        cli.variant = cli.worker
        print("RESULT " + json.dumps(run_variant(cli)), flush=True)
        return
    if cli.batch_size % min(cli.micro_batch, cli.batch_size):
        parser.error("--batch-size must be a multiple of --micro-batch")

    with tempfile.TemporaryDirectory() as scratch:
        cli.workdir = cli.workdir or scratch
        folder = model_folder(cli, cli.workdir)
        results = []
        for variant in cli.variants.split(","):
            print(f"running {variant} ...", flush=True)
            results.append(spawn(cli, variant, folder))
    first = results[0]
    print(f"\nmodel={cli.model} random_arch={cli.random_arch} device={first['device']} {first['dtype']} "
          f"batch={cli.batch_size} micro={cli.micro_batch} query≈{first['mean_query_tokens']:.0f} "
          f"response={cli.response_length} ppo_epochs={cli.ppo_epochs} timed_updates={cli.updates}")
    rows = [
        ("episodes/s", "episodes_per_second", "{:.3f}"), ("tokens/s", "tokens_per_second", "{:.0f}"),
        ("sampled tokens/s", "sampled_tokens_per_second", "{:.0f}"), ("time: generate", "share_generate", "{:.0%}"),
        ("time: rollout forwards", "share_rollout_forwards", "{:.0%}"), ("time: PPO epochs", "share_ppo_epochs", "{:.0%}"),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"), ("peak GPU memory (MiB)", "peak_gpu_mib", "{:.0f}"),
        ("achieved TFLOP/s", "achieved_tflops", "{:.1f}"), ("MFU (whole update)", "mfu", "{:.1%}"),
        ("MFU while sampling", "mfu_sampling", "{:.1%}"), ("MFU in PPO epochs", "mfu_ppo_epochs", "{:.1%}"),
        ("trainable parameters", "trainable_params", "{:,}"),
        ("cached frozen blocks", "cached_frozen_blocks", "{}"),
    ]
    print(f"{'':26s}" + "".join(f"{r['variant']:>18s}" for r in results))
    for label, key, fmt in rows:
        if any(r.get(key) is not None for r in results):
            print(f"{label:26s}" + "".join(f"{fmt.format(r[key]) if r.get(key) is not None else '-':>18s}" for r in results))
    print("RESULTS " + json.dumps(results))
    if cli.json_out:
        with open(cli.json_out, "w") as f:
            json.dump({"args": vars(cli), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
