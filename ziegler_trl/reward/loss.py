"""The reward model's losses: the paper's best-of-K softmax and InstructGPT's pairwise ranking loss."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def best_of_k_loss(rewards: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Ziegler et al. (2019), eq. 1:  loss(r) = −E[ log( exp r(x, y_b) / Σ_i exp r(x, y_i) ) ].

    rewards: [B, K] scores of the K completions of each query; best: [B] index b of the labeler's choice.
    For K = 2 this is the Bradley–Terry loss −log σ(r_b − r_other).
    """
    return F.cross_entropy(rewards.float(), best.long())


def ranking_loss(rewards: torch.Tensor, ranking: torch.Tensor) -> torch.Tensor:
    """Ouyang et al. (2022), eq. 1:  loss(r) = −1/C(K,2) · E[ Σ_{y_w ≻ y_l} log σ(r(x, y_w) − r(x, y_l)) ].

    rewards: [B, K]; ranking: [B, K] completion indices ordered best first. Averaged over all C(K,2) ordered
    pairs of every query, then over the batch.
    """
    ranked = rewards.float().gather(1, ranking.long())  # ranked[:, 0] is the best completion's score
    pairs = list(itertools.combinations(range(rewards.shape[1]), 2))
    better = torch.tensor([i for i, _ in pairs], device=rewards.device)
    worse = torch.tensor([j for _, j in pairs], device=rewards.device)
    return -F.logsigmoid(ranked[:, better] - ranked[:, worse]).mean()
