"""Train a policy with the paper's PPO (ZieglerPPOTrainer) against a reward model.

    accelerate launch recipes/train_policy.py --config recipes/configs/ppo_sentiment.yaml
    python recipes/train_policy.py --config recipes/configs/ppo_cpu_small.yaml        # small CPU run
    ziegler-trl train-policy --config recipes/configs/ppo_cpu_small.yaml              # the same, installed CLI

Any field of the YAML can be overridden on the command line (`--learning_rate 5e-6`). ρ is `--model_name_or_path`;
`--dataset_name` is either raw texts for the task ('builtin', a JSONL file, or one of the task's Hub sources; `text`
column) or a TRL prompt dataset (`prompt` column) when `task` is unset. See `ziegler_trl.ppo.pipeline`.
"""

from ziegler_trl.cli import run_recipe

if __name__ == "__main__":
    run_recipe("train-policy", "recipes/train_policy.py")
