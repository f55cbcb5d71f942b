"""Options from a YAML config file (`--config`) and the command line, checked before TRL's parser sees them.

`TrlParser` reads a config file with `yaml.safe_load` and applies its keys as defaults: a typo in a key stops a
job with "Unknown arguments from config file", a YAML error shows a traceback, and an unquoted `no` becomes
`False` in a string option. `load_config_file` reads the file itself and raises `ConfigFileError` naming the file,
the line and the key: unreadable or non-UTF-8 files, YAML syntax errors, a top level that is not a mapping, keys
that no option of the command has (with the closest option suggested), repeated keys, and values of the wrong
type. `parse_args_and_config` is what every `ziegler-trl` stage and recipe parses its arguments with.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .errors import ConfigFileError, UserInputError, shorten

logger = logging.getLogger(__name__)

# TrlParser's own key: environment variables to set before the run.
ENV_KEY = "env"
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _option_types(dataclass_types: Iterable[type]) -> dict[str, object]:
    """Each command-line option (init field) of the dataclasses with its resolved type annotation."""
    options: dict[str, object] = {}
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if f.init:
                options[f.name] = hints.get(f.name, typing.Any)
    return options


def _describe(kind: object) -> str:
    if kind is type(None):
        return "null"
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in kind)
    if origin in (list, tuple, Sequence):
        args = typing.get_args(kind)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in (dict, Mapping) or kind is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))


def _matches(value: object, kind: object) -> bool:
    """Whether TRL's parser turns `value` (as YAML loaded it) into a valid value of an option typed `kind`. Strings
    count when the option's type converts them (YAML reads `1e-5` as a string; argparse then makes it a float)."""
    if kind is typing.Any or kind is object:
        return True
    if kind is type(None):
        return value is None
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, k) for k in typing.get_args(kind))
    if origin is typing.Literal:
        return value in typing.get_args(kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return any(value == m.value or value is m for m in kind)
    if origin in (list, tuple, Sequence):
        (item, *_) = typing.get_args(kind) or (typing.Any,)
        # TrlParser passes a YAML scalar through for a list option (e.g. `lora_target_modules: all-linear`).
        items = value if isinstance(value, list) else [value]
        return all(_matches(v, item) for v in items)
    if origin in (dict, Mapping) or kind is dict:
        return isinstance(value, dict)
    if kind is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _TRUE | _FALSE)
    if kind is int:
        integer = isinstance(value, int) and not isinstance(value, bool)
        return integer or (isinstance(value, str) and _parses(int, value))
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number or (isinstance(value, str) and _parses(float, value))
    if kind is str:
        return isinstance(value, str)
    return True  # a type TRL's parser builds itself (e.g. a config object): leave it to the parser


def _parses(convert: type, text: str) -> bool:
    try:
        convert(text)
    except ValueError:
        return False
    return True


def _hint(value: object, kind: object) -> str:
    """A fix for the usual YAML surprise: unquoted yes/no/on/off are booleans."""
    if isinstance(value, bool) and _matches("x", kind):
        return "; YAML reads unquoted yes/no/on/off/true/false as a boolean: quote the value"
    return ""


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(path, "no such config file") from None
    except IsADirectoryError:
        raise ConfigFileError(path, "is a folder, not a config file") from None
    except OSError as err:
        raise ConfigFileError(path, f"cannot read the config file ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigFileError(
            path, f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})", line=line
        ) from None


def load_config_file(
    path: str | Path, dataclass_types: Iterable[type] = (), renamed: Mapping[str, str] | None = None
) -> dict:
    """The mapping of a YAML config file, every key an option of `dataclass_types` (plus TRL's `env`) holding a
    value of that option's type. Keys named in `renamed` (old name → new name) are renamed, with a warning.

    Raises `ConfigFileError` (file, line, key) for anything `TrlParser` would refuse or misread.
    """
    import yaml

    path = Path(path)
    text = _read_text(path)
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters here
        node = loader.get_single_node()
        lines: dict[object, int] = {}  # key → its line, for messages
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
            key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in lines:
                raise ConfigFileError(path, f"repeated key (first on line {lines[key]})", line=line, field=str(key))
            if isinstance(key, typing.Hashable):
                lines[key] = line
        config = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = " ".join(str(part) for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
        raise ConfigFileError(path, f"not valid YAML: {problem or err}", line=mark.line + 1 if mark else None) from None
    except ConfigFileError:
        raise
    except RecursionError:
        raise ConfigFileError(path, "nests too deeply to be a config") from None
    except ValueError as err:  # an integer literal over Python's digit limit
        raise ConfigFileError(path, f"holds a value YAML cannot read ({shorten(str(err))})") from None
    finally:
        if loader is not None:
            loader.dispose()
    if config is None:
        raise ConfigFileError(path, "is empty: expected a mapping of option: value")
    if not isinstance(config, dict):
        raise ConfigFileError(
            path, f"expected a mapping of option: value at the top level, got a {type(config).__name__}", line=1
        )

    options = _option_types(dataclass_types)
    renamed = renamed or {}
    checked: dict = {}
    for key, value in config.items():
        line = lines.get(key)
        if not isinstance(key, str):
            raise ConfigFileError(path, "option names must be strings", line=line, value=key)
        if key in renamed:
            logger.warning(f"{path}, line {line}: option {key!r} is deprecated, use {renamed[key]!r} (the old name "
                           "is removed in the next release)")
            if renamed[key] in config:
                raise ConfigFileError(path, f"both {key!r} and its new name {renamed[key]!r} are set", line=line,
                                      field=key)
            key = renamed[key]
        if key == ENV_KEY:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ConfigFileError(path, "must be a mapping of environment variable: value", line=line, field=key,
                                      value=value)
        elif key not in options:
            close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigFileError(path, f"unknown option{suggestion}", line=line, field=key)
        elif not _matches(value, options[key]):
            raise ConfigFileError(path, f"must be {_describe(options[key])}{_hint(value, options[key])}", line=line,
                                  field=key, value=value)
        checked[key] = value
    return checked


def rename_options(argv: list[str], renamed: Mapping[str, str]) -> list[str]:
    """`--old value` / `--old=value` (underscores or dashes) → the new option name, with a warning."""
    spellings = {}
    for old, new in renamed.items():
        spellings[f"--{old}"] = f"--{new}"
        spellings[f"--{old.replace('_', '-')}"] = f"--{new}"
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in spellings:
            logger.warning(f"option {name} is deprecated, use {spellings[name]} (the old name is removed in the next "
                           "release)")
            arg = spellings[name] + eq + value
        out.append(arg)
    return out


def parse_args_and_config(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    renamed: Mapping[str, str] | None = None,
    prog: str | None = None,
) -> tuple:
    """Instances of `dataclass_types` from `argv` (default `sys.argv[1:]`), with `--config FILE` giving defaults
    that the command line overrides, as `TrlParser.parse_args_and_config` does; the file is checked first by
    `load_config_file`. A value the dataclasses refuse (their `__post_init__` checks) is a `UserInputError`."""
    from trl import TrlParser

    argv = rename_options(list(sys.argv[1:] if argv is None else argv), renamed or {})
    parser = TrlParser(list(dataclass_types), prog=prog)
    config_flags = [i for i, arg in enumerate(argv) if arg == "--config" or arg.startswith("--config=")]
    if len(config_flags) > 1:
        raise UserInputError("--config is given more than once")
    if config_flags:
        i = config_flags[0]
        flag = argv.pop(i)
        if flag.startswith("--config="):
            path = flag.removeprefix("--config=")
        elif i < len(argv):
            path = argv.pop(i)
        else:
            raise UserInputError("--config needs the path of a YAML file")
        config = load_config_file(path, dataclass_types, renamed)
        for name, value in config.pop(ENV_KEY, {}).items():
            os.environ[name] = str(value)
        parser.set_defaults_with_config(**config)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except UserInputError:
        raise
    except ValueError as err:  # raised by a dataclass's __post_init__: an option value it does not accept
        raise UserInputError(" ".join(str(err).split())) from err


def with_current_names(settings: Mapping[str, object], renamed: Mapping[str, str]) -> dict:
    """`settings` (e.g. a run's saved config.json) with option names of earlier releases replaced by today's."""
    return {renamed.get(name, name): value for name, value in settings.items()}


def override_default(config: type, name: str, default: object) -> dataclasses.Field:
    """`config`'s field `name` with another default and the same help: how a preset (a subclass) changes a default."""
    (base,) = [f for f in dataclasses.fields(config) if f.name == name]
    return dataclasses.field(default=default, metadata=base.metadata)
