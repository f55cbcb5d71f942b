"""Supervised fine-tuning on demonstrations in a task's prompt format (InstructGPT stage 1).

    accelerate launch recipes/train_sft.py --config recipes/configs/sft_tldr.yaml --data tldr.jsonl

The saved folder is a causal LM: pass it as `model_name_or_path` to the reward and PPO recipes to run the paper's
"supervised + RL" rows (ρ = the SFT model).
"""

from trl import TrlParser

from ziegler_trl.sft import SFTScriptArguments, ZieglerSFTConfig, train_sft

if __name__ == "__main__":
    train_sft(*TrlParser((SFTScriptArguments, ZieglerSFTConfig)).parse_args_and_config())
