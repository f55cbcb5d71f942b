"""Run by tests/test_distributed.py under `accelerate launch` (1 or 2 CPU processes): reward normalisation,
reward training and PPO on a tiny model; each rank writes what must agree across ranks to <out>/rank<i>.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from datasets import Dataset

from ziegler_trl import (
    BestOfKRewardConfig,
    BestOfKRewardTrainer,
    ZieglerPPOConfig,
    ZieglerPPOTrainer,
    load_reward_model,
    load_tokenizer,
    normalize_reward_model,
)

WORDS = ["good", "bad", "cat", "dog", "happy", "sad", "the", "day"]


def main(model_dir: str, out: Path) -> None:
    state = PartialState(cpu=True)
    rank, world = state.process_index, state.num_processes
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    result: dict = {"world_size": world}

    # Normalisation: the global set of 16 ρ samples, sharded across ranks; gain/bias must come from all of them.
    prompts = [f"The cat sat {i}." for i in range(16)]
    completions = [" " + " ".join(WORDS[(i * j) % 8] for j in range(1, 5)) for i in range(16)]
    mine = slice(rank * 16 // world, (rank + 1) * 16 // world)
    torch.manual_seed(0)
    model = load_reward_model(model_dir, tokenizer)
    result["gain_bias"] = normalize_reward_model(model, tokenizer, prompts[mine], completions[mine])

    # Reward training: a global batch of 4 comparisons per step, split across ranks.
    rows = [
        {"prompt": p, "completions": [c, c + " good", c + " bad", c + " day"], "best": 1}
        for p, c in zip(prompts, completions)
    ]
    args = BestOfKRewardConfig(
        output_dir=str(out / "rm"), max_steps=2, per_device_train_batch_size=4 // world, logging_steps=1,
        report_to="none", save_strategy="no", seed=0, dataloader_pin_memory=False, use_cpu=True,
    )
    trainer = BestOfKRewardTrainer(model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    result["rm_accuracy"] = [e["accuracy"] for e in trainer.state.log_history if "accuracy" in e]
    result["rm_head_sum"] = trainer.accelerator.unwrap_model(trainer.model).score.weight.sum().item()

    # PPO: global rollout batch of 8 episodes, adaptive β; β must be identical on every rank after each update.
    ppo_args = ZieglerPPOConfig(
        output_dir=str(out / "ppo"), task="sentiment", response_length=8, per_device_train_batch_size=8 // world,
        total_episodes=16, init_kl_coef=0.2, kl_target=6.0, kl_horizon=100, learning_rate=1e-4, seed=0,
        report_to="none", save_strategy="no", logging_steps=1, log_completions=False, dataloader_pin_memory=False,
        use_cpu=True, whiten_rewards=False,  # 8 // world episodes per process: below the paper's minimum of 8
    )
    ppo = ZieglerPPOTrainer(
        model_dir, args=ppo_args, train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=load_tokenizer(model_dir),
        reward_fn=lambda ps, cs: [float(c.count("good")) for c in cs],
    )
    ppo.train()
    result["beta"] = ppo.kl_controller.value
    result["kl_coef_log"] = [e["objective/kl_coef"] for e in ppo.state.log_history if "objective/kl_coef" in e]
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    if torch.distributed.is_initialized():  # as the CLI does after a stage: no rank exits with gloo's threads up
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
