import json

import pytest

from ziegler_trl.evaluation import lead3, split_sentences
from ziegler_trl.evaluation.summaries import Summaries, lead3_summaries, load_saved_summaries, row_summaries


def test_split_sentences_keeps_abbreviations_and_breaks_at_newlines():
    text = "Mr. Smith went to Washington. The U.S. Army left at 5 p.m. on Monday!\nNo period here\n\nWhy? Because."
    assert split_sentences(text) == [
        "Mr. Smith went to Washington.",
        "The U.S. Army left at 5 p.m. on Monday!",
        "No period here",
        "Why?",
        "Because.",
    ]
    assert split_sentences("  \n ") == []


def test_lead3_is_first_three_sentences_one_per_line():
    article = "First one. Dr. Who said so. Third, with 3.5 million. Fourth is dropped."
    assert lead3(article) == "First one.\nDr. Who said so.\nThird, with 3.5 million."
    assert lead3("Only one sentence") == "Only one sentence"


def test_saved_summaries_round_trip_and_errors(tmp_path):
    path = tmp_path / "samples.jsonl"
    lead3_summaries(["A b. C d. E f. G h.", "One."]).to_jsonl(path)
    Summaries("zs", [1], ["x y"], [False]).to_jsonl(path)
    loaded = load_saved_summaries(path, "zs")
    assert (loaded.indices, loaded.summaries, loaded.valid) == ([1], ["x y"], [False])
    assert load_saved_summaries(path, "lead-3").summaries == ["A b.\nC d.\nE f.", "One."]
    with pytest.raises(ValueError, match="no summaries for row 'other'"):
        load_saved_summaries(path, "other")
    path.write_text(json.dumps({"row": "zs", "index": 0, "valid": True}) + "\n")
    with pytest.raises(ValueError, match=r"samples.jsonl:1: missing field 'summary'"):
        load_saved_summaries(path, "zs")


def test_row_summaries_specs():
    texts, refs = ["A b. C d. E f. G h."], ["ref"]
    assert row_summaries("lead-3", texts, refs, "cnndm").summaries == ["A b.\nC d.\nE f."]
    assert row_summaries("reference", texts, refs, "cnndm").summaries == ["ref"]
    with pytest.raises(ValueError, match="row 'bogus'"):
        row_summaries("bogus", texts, refs, "cnndm")
