"""A small seeded run of benchmarks/fuzz_importers.py: malformed files give only our domain errors."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_importers.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_importers", SCRIPT)
    module = sys.modules["fuzz_importers"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_fuzzed_files_raise_only_domain_errors(tmp_path):
    fuzzer = load_fuzzer()
    tallies = fuzzer.fuzz(cases=60, seed=0, workdir=tmp_path)
    assert set(tallies) >= {"load_openai_labels", "load_label_dataset", "LabelStore.import_jsonl", "label import",
                            "load_task_texts[sentiment]", "load_task_texts[cnndm]", "load_task_texts[tldr]"}
    failures = {name: importer.failures[:3] for name, importer in fuzzer.IMPORTERS.items() if importer.failures}
    assert failures == {}
    for name, tally in tallies.items():
        assert tally["cases"] == 60, name
        assert tally["other"] == 0 and tally["store changed"] == 0, name
        assert tally["domain"] > 0 and tally["accepted"] + tally["domain"] == 60, name


def test_the_fuzzer_counts_what_escapes(tmp_path):
    """A loader that lets a bare ValueError out, or raises our error without naming the file, is counted."""
    fuzzer = load_fuzzer()
    importer = fuzzer.Importer("broken", [], load=lambda path: int("not a number"))
    fuzzer.run_case(importer, tmp_path / "x.jsonl", "case 0")

    def unnamed(path):
        raise fuzzer.InputFileError("elsewhere.jsonl", "bad")

    fuzzer.run_case(importer, tmp_path / "x.jsonl", "case 1")
    importer.load = unnamed
    fuzzer.run_case(importer, tmp_path / "x.jsonl", "case 2")
    assert importer.tally["other"] == 3 and importer.tally["domain"] == 0
    assert "ValueError: invalid literal" in importer.failures[0] and "not naming the file" in importer.failures[2]
