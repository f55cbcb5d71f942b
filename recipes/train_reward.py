"""Train the paper's reward model from best-of-K labels and normalise it against samples of ρ.

    accelerate launch recipes/train_reward.py --config recipes/configs/reward_sentiment.yaml --dataset_name labels.jsonl
    ziegler-trl train-reward --config recipes/configs/reward_sentiment.yaml --dataset_name my_labels.jsonl
    python recipes/train_reward.py ... --use_peft --lora_r 16 --lora_target_modules all-linear   # LoRA, saved merged

See `ziegler_trl.reward.pipeline.train_reward_model` for the steps.
"""

from ziegler_trl.cli import run_recipe

if __name__ == "__main__":
    run_recipe("train-reward", "recipes/train_reward.py")
