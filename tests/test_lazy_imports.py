"""`import ziegler_trl` is cheap and complete: every public name imports lazily, and the quick commands never load
torch, transformers, trl or datasets (checked in a fresh interpreter)."""

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ziegler_trl

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["ziegler_trl", "ziegler_trl.evaluation", "ziegler_trl.labeling", "ziegler_trl.ppo", "ziegler_trl.reward"]
HEAVY = ("torch", "transformers", "trl", "datasets", "numpy")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports(package):
    module = importlib.import_module(package)
    assert module.__all__ and set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        getattr(module, "no_such_name")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_export_is_shadowed_by_a_submodule(package):
    """Importing a submodule binds it on its package: an export of the same name would then read as the module."""
    module = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert not submodules & set(module.__all__)


def test_the_contract_names_import_from_the_top_level():
    from ziegler_trl import (  # noqa: F401  (DESIGN.md's public API)
        TASKS,
        AdaptiveKLCallback,
        AdaptiveKLController,
        BestOfKRewardConfig,
        BestOfKRewardTrainer,
        FixedKLController,
        LabelStore,
        SentimentLabeler,
        TaskSpec,
        ZieglerPPOConfig,
        ZieglerPPOTrainer,
        best_of_k_loss,
        copy_stats,
        fit_reward_normalization,
        lead3,
        load_openai_labels,
        normalize_reward_model,
        ranking_loss,
        rouge,
    )

    assert callable(rouge) and rouge(["a b"], ["a b"])["rouge1"] == pytest.approx(100.0)
    assert ziegler_trl.__version__


def heavy_modules_after(argv: list[str], cwd: Path) -> list[str]:
    """The heavy packages a fresh interpreter has imported after running `ziegler-trl ARGV`."""
    code = (
        "import json, sys\n"
        "from ziegler_trl.cli import main\n"
        "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


QUICK_COMMANDS = [
    ["--help"],
    ["label", "--help"],
    ["label", "status", "--store", "labels.sqlite"],
    ["label", "add-labeler", "--store", "labels.sqlite", "ann"],
    ["label", "assign", "--store", "labels.sqlite"],
    ["label", "export", "--store", "labels.sqlite", "out.jsonl"],
    ["eval", "--help"],
    *[["eval", table, "--help"] for table in ("summarization", "copying", "preference", "agreement", "kl-frontier")],
]


@pytest.mark.parametrize("argv", QUICK_COMMANDS, ids=" ".join)
def test_quick_commands_import_no_torch(argv, tmp_path):
    assert heavy_modules_after(argv, tmp_path) == []


def test_collect_help_lists_its_fields_without_torch(tmp_path):
    """A dataclass command's help needs TRL's parser (trl, cheap without its trainers) and nothing heavier."""
    assert heavy_modules_after(["collect", "--help"], tmp_path) == ["trl"]


def test_import_ziegler_trl_imports_no_torch(tmp_path):
    code = "import sys, ziegler_trl; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_help_only_constants_match_the_library():
    """The eval commands spell out choices so that --help needs no torch: they must equal the library's."""
    from ziegler_trl.evaluation.commands import kl_frontier, preference
    from ziegler_trl.evaluation.preference import PROTOCOLS
    from ziegler_trl.tasks import TASKS

    assert preference.PROTOCOL_NAMES == sorted(PROTOCOLS)
    for module in (preference, kl_frontier):
        import argparse

        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        task = next(a for a in parser._actions if a.dest == "task")
        assert list(task.choices) == sorted(TASKS)
