"""Supervised fine-tuning on demonstrations in a task's prompt format (InstructGPT stage 1).

    accelerate launch recipes/train_sft.py --config recipes/configs/sft_tldr.yaml --dataset_name tldr.jsonl
    ziegler-trl sft --config recipes/configs/sft_tldr.yaml --dataset_name builtin          # the same, installed CLI

The saved folder is a causal LM: pass it as `--model_name_or_path` to the reward and PPO recipes to run the paper's
"supervised + RL" rows (ρ = the SFT model).
"""

from ziegler_trl.cli import run_recipe

if __name__ == "__main__":
    run_recipe("sft", "recipes/train_sft.py")
