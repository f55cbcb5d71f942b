"""Lazy re-exports for packages (PEP 562): `import ziegler_trl` costs nothing until a name is used.

A package's `__init__` lists which submodule holds each public name; the first access imports that submodule (and
with it torch, transformers, ...) and caches the value in the package. So `ziegler-trl --help` and the label
commands never import torch, while `from ziegler_trl import ZieglerPPOTrainer` works as with eager imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package`, where `exports` maps each public name to the relative
    name of the submodule defining it (e.g. `{"LabelStore": ".labeling.store"}`).

    An exported name must not also be a submodule of `package`: importing that submodule would bind it on the
    package and shadow the export (`tests/test_lazy_imports.py` checks every package).
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return sorted(exports), __getattr__, __dir__
