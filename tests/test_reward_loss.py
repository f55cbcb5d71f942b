import math

import pytest
import torch
import torch.nn.functional as F

from ziegler_trl import best_of_k_loss, ranking_loss


def test_best_of_k_loss_matches_hand_computed_softmax():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    best = torch.tensor([3, 1])
    # row 0: -log(e^4 / (e^1+e^2+e^3+e^4)) = log(1 + e^-1 + e^-2 + e^-3); row 1: log 4
    expected = (math.log(1 + math.exp(-1) + math.exp(-2) + math.exp(-3)) + math.log(4)) / 2
    assert best_of_k_loss(rewards, best).item() == pytest.approx(expected, abs=1e-6)
    assert math.log(1 + math.exp(-1) + math.exp(-2) + math.exp(-3)) == pytest.approx(0.4401897, abs=1e-6)


def test_best_of_k_with_two_completions_is_bradley_terry():
    torch.manual_seed(0)
    rewards = torch.randn(16, 2)
    best = torch.randint(0, 2, (16,))
    chosen = rewards.gather(1, best[:, None]).squeeze(1)
    rejected = rewards.gather(1, (1 - best)[:, None]).squeeze(1)
    bradley_terry = -F.logsigmoid(chosen - rejected).mean()
    assert best_of_k_loss(rewards, best).item() == pytest.approx(bradley_terry.item(), abs=1e-6)


def test_best_of_k_loss_is_shift_invariant_and_has_gradient():
    rewards = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    loss = best_of_k_loss(rewards, torch.tensor([0]))
    assert loss.item() == pytest.approx(best_of_k_loss(rewards.detach() + 7.0, torch.tensor([0])).item(), abs=1e-6)
    loss.backward()
    softmax = torch.softmax(rewards.detach(), dim=1)
    assert torch.allclose(rewards.grad, softmax - torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6)


def test_ranking_loss_hand_computed_three_way():
    rewards = torch.tensor([[0.0, 1.0, 3.0]])
    ranking = torch.tensor([[2, 1, 0]])  # completion 2 best, then 1, then 0
    # pairs (2≻1): 2, (2≻0): 3, (1≻0): 1 → mean softplus(−d)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-3)) + math.log1p(math.exp(-1))) / 3
    assert ranking_loss(rewards, ranking).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.1629257, abs=1e-6)


def test_ranking_loss_with_two_completions_equals_best_of_k():
    rewards = torch.tensor([[0.3, -0.2], [1.0, 2.5]])
    ranking = torch.tensor([[0, 1], [1, 0]])
    assert ranking_loss(rewards, ranking).item() == pytest.approx(
        best_of_k_loss(rewards, ranking[:, 0]).item(), abs=1e-6
    )
