"""r(x, y) as PPO reads it: a scalar reward model over token ids, or a `reward_fn` over texts.

Reward models read the query's content (`reward_ids`: without a task's prefix or suffix) followed by the truncated
response without pads (`reward.scoring.reward_sequence`); a `reward_fn` gets the same two parts decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..reward.forward import tokenize_comparison
from ..reward.scoring import reward_sequence, score_prefixes, score_sequences

RewardFn = Callable[[list[str], list[str]], Sequence[float]]


def decode_episodes(
    tokenizer: PreTrainedTokenizerBase, reward_ids: list[list[int]], responses: torch.Tensor
) -> tuple[list[str], list[str]]:
    """(prompts, completions) as texts: the query content and the response without its pads."""
    pad = tokenizer.pad_token_id
    prompts = tokenizer.batch_decode(reward_ids)
    completions = tokenizer.batch_decode([[t for t in r.tolist() if t != pad] for r in responses])
    return prompts, completions


class RewardSource:
    """Exactly one of `model` (a scalar sequence classifier) and `fn` (`fn(prompts, completions) -> scores`)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int,
        model: PreTrainedModel | None = None,
        fn: RewardFn | None = None,
    ):
        if (model is None) == (fn is None):
            raise ValueError("Give exactly one of a reward model and a reward function")
        self.tokenizer, self.batch_size, self.model, self.fn = tokenizer, batch_size, model, fn

    def score(self, reward_ids: list[list[int]], responses: torch.Tensor) -> torch.Tensor:
        """r(x, y) [B] (float32, CPU) of truncated responses."""
        pad = self.tokenizer.pad_token_id
        if self.model is not None:
            sequences = [reward_sequence(q, r.tolist(), pad) for q, r in zip(reward_ids, responses)]
            return score_sequences(self.model, sequences, pad, self.batch_size)
        return self._call_fn(*decode_episodes(self.tokenizer, reward_ids, responses))

    def potentials(self, reward_ids: list[list[int]], responses: torch.Tensor) -> torch.Tensor:
        """Φ [B, T+1] (float32, CPU): the reward model's score of the query and each prefix of the response
        (`reward.scoring.score_prefixes`); the last column is r(x, y)."""
        return score_prefixes(self.model, reward_ids, responses, self.tokenizer.pad_token_id, self.batch_size)

    def score_comparisons(self, rows: list[dict]) -> torch.Tensor:
        """The rewards [n·K] of labeled comparisons' completions (`prompt`, `completions`), row by row."""
        if self.model is not None:
            pad, sequences = self.tokenizer.pad_token_id, []
            for row in rows:
                ids = tokenize_comparison(row, self.tokenizer)
                sequences += [ids["prompt_ids"] + completion for completion in ids["completion_ids"]]
            return score_sequences(self.model, sequences, pad, self.batch_size)
        prompts = [row["prompt"] for row in rows for _ in row["completions"]]
        return self._call_fn(prompts, [completion for row in rows for completion in row["completions"]])

    def _call_fn(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        scores = list(self.fn(prompts, completions))
        if len(scores) != len(prompts):
            raise ValueError(f"reward_fn returned {len(scores)} scores for {len(prompts)} completions")
        return torch.tensor([float(s) for s in scores])
