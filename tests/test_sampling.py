import torch

from tests.conftest import tiny_llama
from ziegler_trl.sampling import generate_responses
from ziegler_trl.tasks import TASKS


def test_eos_does_not_stop_fixed_length_sampling(tiny_tokenizer):
    """The paper samples exactly response_length tokens; EOS is an ordinary token (here it is nearly certain)."""
    model = tiny_llama(tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    model.generation_config.eos_token_id = eos  # as saved with real checkpoints
    bias = torch.zeros(len(tiny_tokenizer))
    bias[eos] = 30.0
    model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    torch.manual_seed(0)
    responses = generate_responses(model, [[5, 6, 7], [8]], TASKS["sentiment"], tiny_tokenizer.pad_token_id, 2)
    assert responses.shape == (4, 24)
    assert (responses == eos).all()  # never cut short and padded
    assert model.generation_config.eos_token_id == eos  # restored
