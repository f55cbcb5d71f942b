import json

import pytest

from ziegler_trl import load_label_dataset, load_openai_labels
from ziegler_trl.reward.labels import OPENAI_PAD_ID, validate_label_rows


def _record(tokenizer, best=2):
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    return {
        "query": enc("The cat sat.") + [OPENAI_PAD_ID] * 3,
        "sample0": enc(" It was good.") + [OPENAI_PAD_ID] * 2,
        "sample1": enc(" The day."),
        "sample2": enc(" A happy dog.") + [OPENAI_PAD_ID],
        "sample3": enc(" Nothing happened."),
        "best": best,
    }


def test_load_openai_labels_good_file(tmp_path, tiny_tokenizer):
    path = tmp_path / "offline_5k.json"
    path.write_text(json.dumps([_record(tiny_tokenizer), _record(tiny_tokenizer, best=0)]))
    dataset = load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    assert dataset.column_names == ["prompt", "completions", "best"]
    assert dataset[0] == {
        "prompt": "The cat sat.",
        "completions": [" It was good.", " The day.", " A happy dog.", " Nothing happened."],
        "best": 2,
    }
    assert dataset["best"] == [2, 0]
    # load_label_dataset recognises the OpenAI format by its fields
    assert load_label_dataset(str(path), tokenizer=tiny_tokenizer)["best"] == [2, 0]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("best"), r"record 1: missing field 'best'"),
        (lambda r: r.pop("query"), r"record 1: missing field 'query'"),
        (lambda r: r.update(best=4), r"record 1, field 'best': expected an integer in 0..3, got 4"),
        (lambda r: r.update(best="2"), r"record 1, field 'best': expected an integer in 0..3, got '2'"),
        (lambda r: r.update(sample2="text"), r"record 1, field 'sample2': expected a list of integer token ids"),
        (lambda r: r.pop("sample3"), r"record 1: expected fields \['sample0', 'sample1', 'sample2', 'sample3'\] \(K=4\)"),
        (lambda r: r.update(sample4=[1]), r"record 1: expected fields .* \(K=4\), found .*'sample4'"),
        (lambda r: r.update(sample1=[10**6]), r"record 1, field 'sample1': token id 1000000 is outside"),
    ],
)
def test_load_openai_labels_malformed_records(tmp_path, tiny_tokenizer, mutate, message):
    bad = _record(tiny_tokenizer)
    mutate(bad)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([_record(tiny_tokenizer), bad]))
    with pytest.raises(ValueError, match=message) as err:
        load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    assert "labels.json" in str(err.value)


def test_load_openai_labels_bad_files(tmp_path, tiny_tokenizer):
    path = tmp_path / "labels.json"
    path.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    path.write_text("[{]")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    path.write_text("[]")
    with pytest.raises(ValueError, match="non-empty JSON array"):
        load_openai_labels(str(path), tokenizer=tiny_tokenizer)


def test_label_rows_validation_names_row_and_field(tmp_path):
    good = {"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 1}
    assert validate_label_rows([good], "x")[0] == good
    cases = [
        ({"completions": ["a", "b"], "best": 0}, r"src, row 1: missing field 'prompt'"),
        ({"prompt": "p", "completions": ["a"], "best": 0}, r"row 1, field 'completions': expected a list of at least 2"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 4}, r"row 1, field 'best': expected an integer in 0..3"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "best": 0}, r"row 1, field 'completions': has 3 completions but earlier rows have 4"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 0, "ranking": [0, 1, 1, 2]}, r"row 1, field 'ranking': expected a permutation"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 1, "ranking": [0, 1, 2, 3]}, r"row 1: 'best' is 1 but 'ranking' starts with 0"),
        ({"prompt": 3, "completions": ["a", "b", "c", "d"], "best": 0}, r"row 1, field 'prompt'"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            validate_label_rows([good, bad], "src")
    ranked = {"prompt": "p", "completions": ["a", "b"], "ranking": [1, 0]}
    assert validate_label_rows([ranked], "src")[0]["best"] == 1


def test_load_label_dataset_jsonl_reports_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:2: not valid JSON"):
        load_label_dataset(str(path))
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n")
    assert load_label_dataset(str(path))[0]["best"] == 0
