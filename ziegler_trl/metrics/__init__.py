"""Our metrics as Hugging Face `evaluate` modules, loaded offline from the installed package (no Hub):

    import evaluate
    from ziegler_trl.metrics import metric_path

    rouge = evaluate.load(metric_path("ziegler_rouge"))               # predictions vs references
    lead3 = evaluate.load(metric_path("ziegler_rouge"), "lead3")      # the lead-3 baseline of articles
    copying = evaluate.load(metric_path("ziegler_copying"))           # how much summaries copy their sources

Each module computes with `ziegler_trl.evaluation` (`rouge`, `lead3`, `copy_table`), so its numbers are the ones the
eval tables report.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError

METRICS_DIR = Path(__file__).resolve().parent
METRICS = ("ziegler_copying", "ziegler_rouge")


def metric_path(name: str) -> str:
    """The folder `evaluate.load` reads for our metric `name` (one of `METRICS`)."""
    if name not in METRICS:
        raise UserInputError(f"unknown metric {name!r}; ziegler-trl ships {list(METRICS)}")
    return str(METRICS_DIR / name)
