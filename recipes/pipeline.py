"""The paper's loop, offline or batched online (§4.1): label → reward model → PPO, resumable.

    python recipes/pipeline.py --mode batched --rounds 4 --task sentiment --dataset_name builtin
    ziegler-trl collect ...          # the same, installed CLI

See `ziegler_trl.pipeline` for the stages.
"""

from ziegler_trl.cli import run_recipe

if __name__ == "__main__":
    run_recipe("collect", "recipes/pipeline.py")
