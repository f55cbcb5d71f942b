"""Shared fixtures: a tiny byte-level BPE tokenizer and tiny Llama models built from configs (no network)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# Tiny models gain nothing from a second thread, and threads fight when processes share the 2 CI cores.
torch.set_num_threads(1)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """A script of the repository (e.g. "eval/figure2.py") as a module, loaded from its file as `python` runs it."""
    import importlib.util

    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem + "_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

CORPUS = [
    "The cat sat on the mat. It was a good day.\nA happy dog ran in the park.",
    "She was sad and tired. The rain fell all night.\nHe laughed; the joke was great!",
    "Article:\n\nThe market fell sharply today.\n\nTL;DR: stocks dropped.",
    "I love this wonderful book. I hate the terrible ending. Nothing happened, then everything happened.",
]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences: every byte is a token, so '.' and '\\n' are single tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def tiny_config(tokenizer, **overrides) -> LlamaConfig:
    """A Llama config of a few thousand weights (plus embeddings) over `tokenizer`'s vocabulary."""
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return LlamaConfig(**{**settings, **overrides})


def tiny_llama(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(tokenizer))


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny causal LM + tokenizer folder, loadable by every path-taking API."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder
