"""Train the paper's reward model from best-of-K labels and normalise it against samples of ρ.

    accelerate launch recipes/train_reward.py --config recipes/configs/reward_sentiment.yaml --labels labels.jsonl
    python recipes/train_reward.py --config recipes/configs/reward_sentiment.yaml --labels my_labels.jsonl

See `ziegler_trl.reward.pipeline.train_reward_model` for the steps.
"""

from trl import TrlParser

from ziegler_trl import BestOfKRewardConfig
from ziegler_trl.reward.pipeline import RewardScriptArguments, train_reward_model

if __name__ == "__main__":
    parser = TrlParser((RewardScriptArguments, BestOfKRewardConfig))
    train_reward_model(*parser.parse_args_and_config())
