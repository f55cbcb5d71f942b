"""The paper's loop, offline or batched online (§4.1): label → reward model → PPO, resumable.

    python recipes/pipeline.py --mode batched --rounds 4 --task sentiment --dataset_name builtin
    ziegler-trl collect ...          # the same, installed CLI

See `ziegler_trl.pipeline` for the stages.
"""

from ziegler_trl.pipeline import main

if __name__ == "__main__":
    main()
