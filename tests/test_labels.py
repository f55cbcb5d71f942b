"""Label sources for the reward model: our rows, label-store exports, TRL preference data, OpenAI label files."""

import json
import logging

import pytest
from datasets import Dataset

from ziegler_trl import load_label_dataset, load_openai_labels
from ziegler_trl.errors import LabelFileError
from ziegler_trl.labeling import Answer, LabelStore
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


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


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
        (lambda r: r.pop("best"), r"record 1, field 'best': missing"),
        (lambda r: r.pop("query"), r"record 1, field 'query': missing"),
        (lambda r: r.update(best=4), r"record 1, field 'best': expected an integer in 0..3 \(got 4\)"),
        (lambda r: r.update(best="2"), r"record 1, field 'best': expected an integer in 0..3 \(got '2'\)"),
        (lambda r: r.update(best=True), r"record 1, field 'best': expected an integer in 0..3 \(got True\)"),
        (lambda r: r.update(sample2="text"), r"record 1, field 'sample2': expected a list of integer token ids"),
        (lambda r: r.update(sample2=[1.0]), r"record 1, field 'sample2': expected a list of integer token ids"),
        (lambda r: r.pop("sample3"), r"record 1: expected fields \['sample0', 'sample1', 'sample2', 'sample3'\] \(K=4\)"),
        (lambda r: r.update(sample4=[1]), r"record 1: expected fields .* \(K=4\), found .*'sample4'"),
        (lambda r: r.update(sample1=[10**6]), r"record 1, field 'sample1': token id 1000000 is outside"),
        (lambda r: r.update(sample1=[2**70]), r"record 1, field 'sample1': token id 1180591620717411303424 is"),
        (lambda r: r.update(sample1=[-1]), r"record 1, field 'sample1': token id -1 is outside"),
        (lambda r: r.update(query="\udc00"), r"record 1, field 'query': holds a lone surrogate"),
    ],
)
def test_load_openai_labels_malformed_records(tmp_path, tiny_tokenizer, mutate, message):
    bad = _record(tiny_tokenizer)
    mutate(bad)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([_record(tiny_tokenizer), bad]), encoding="utf-8", errors="surrogatepass")
    with pytest.raises(LabelFileError, match=message) as err:
        load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    assert "labels.json" in str(err.value)


def test_load_openai_labels_bad_files(tmp_path, tiny_tokenizer):
    path = tmp_path / "labels.json"
    cases = [
        (b"", "labels.json: empty file"),
        (b"[{]", r"labels.json, line 1: not valid JSON \(Expecting property name"),
        (b"[]", "expected a non-empty JSON array"),
        (b"[" * 50000 + b"]" * 50000, r"labels.json: not readable JSON \(nested too deep\)"),
        (b"[" + b"9" * 5000 + b"]", r"labels.json: not readable JSON \(Exceeds the limit \(4300 digits\)"),
        (b'[{"query": [1]}, \xff]', r"labels.json, line 1: not valid UTF-8"),
        ('[{"query": [1]}]'.encode("utf-16-le"), "holds NUL bytes: is it UTF-16 or UTF-32 without a byte-order mark"),
        (b"[1, 2]", r"labels.json, record 0: expected an object, got int"),
    ]
    for data, message in cases:
        path.write_bytes(data)
        with pytest.raises(LabelFileError, match=message):
            load_openai_labels(str(path), tokenizer=tiny_tokenizer)
    with pytest.raises(LabelFileError, match="missing.json: no such file"):
        load_openai_labels(str(tmp_path / "missing.json"), tokenizer=tiny_tokenizer)
    # a byte-order mark that says UTF-16 is read as UTF-16
    path.write_bytes(json.dumps([_record(tiny_tokenizer)]).encode("utf-16"))
    assert load_openai_labels(str(path), tokenizer=tiny_tokenizer)["best"] == [2]


def test_label_rows_validation_names_row_and_field():
    good = {"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 1}
    assert validate_label_rows([good], "x")[0] == good
    messages = [{"role": "user", "content": "hi"}]
    cases = [
        ({"completions": ["a", "b"], "best": 0}, r"src, record 1, field 'prompt': missing"),
        ({"prompt": "p", "completions": ["a"], "best": 0}, r"record 1, field 'completions': must be a list of at least 2"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 4}, r"record 1, field 'best': must be an integer in 0..3 \(got 4\)"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 2**80}, r"record 1, field 'best': must be an integer"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "best": 0}, r"record 1, field 'completions': has 3 completions but earlier rows have 4"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 0, "ranking": [0, 1, 1, 2]}, r"record 1, field 'ranking': must be a permutation"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 0, "ranking": [0, "x", 1, 2]}, r"record 1, field 'ranking': must be a permutation"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"], "best": 1, "ranking": [0, 1, 2, 3]}, r"record 1, field 'best': is 1 but 'ranking' starts with 0"),
        ({"prompt": 3, "completions": ["a", "b", "c", "d"], "best": 0}, r"record 1, field 'prompt': must be a string or a non-empty list"),
        ({"prompt": messages, "completions": ["a", "b", "c", "d"], "best": 0}, r"record 1, field 'prompt': is messages but earlier rows' prompts are text"),
        ({"prompt": "p", "completions": ["a", "b", "c", messages], "best": 0}, r"record 1, field 'completions\[3\]': must be a string, like the prompt"),
        ({"prompt": "p", "completions": ["a", "b", "c", "\ud800"], "best": 0}, r"record 1, field 'completions\[3\]': holds a lone surrogate"),
        ({"prompt": "", "completions": ["a", "", "c", "d"], "best": 0}, r"record 1, field 'completions': an empty completion after an empty prompt"),
        ({"prompt": "p", "completions": ["a", "b", "c", "d"]}, r"record 1, field 'best': missing"),
        ({"chosen": "a", "rejected": "b"}, r"record 1, field 'completions': is a TRL preference row"),
        ([1], r"record 1: expected an object, got list"),
    ]
    for bad, message in cases:
        with pytest.raises(LabelFileError, match=message):
            validate_label_rows([good, bad], "src")
    ranked = {"prompt": "p", "completions": ["a", "b"], "ranking": [1, 0]}
    assert validate_label_rows([ranked], "src")[0]["best"] == 1
    with pytest.raises(LabelFileError, match=r"src, record 1, field 'ranking': some rows have 'ranking'"):
        validate_label_rows([ranked, {"prompt": "p", "completions": ["a", "b"], "best": 0}], "src")


def test_load_label_dataset_jsonl_reports_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n\n{broken\n")
    with pytest.raises(LabelFileError, match=r"labels.jsonl, line 3: not valid JSON"):
        load_label_dataset(str(path))
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n\n" +
                    json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 5}) + "\n")
    with pytest.raises(LabelFileError, match=r"labels.jsonl, line 3, field 'best': must be an integer in 0..1"):
        load_label_dataset(str(path))
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n")
    assert load_label_dataset(str(path))[0]["best"] == 0
    with pytest.raises(LabelFileError, match=r"nothere.jsonl: no such file"):
        load_label_dataset(str(tmp_path / "nothere.jsonl"))
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "best": 0}) + "\n" +
                    json.dumps({"chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(LabelFileError, match=r"line 2: is a TRL preference row but the first record is a best-of-K "
                                             r"row; a source holds one format"):
        load_label_dataset(str(path))
    path.write_text(json.dumps({"text": "p"}) + "\n")
    with pytest.raises(LabelFileError, match=r"line 1: is not a label record: expected 'completions'"):
        load_label_dataset(str(path))


# -- label-store exports --------------------------------------------------------------------------------------------
@pytest.fixture
def answered_store(tmp_path) -> LabelStore:
    """Five comparisons: majority vote with a tie, a ranking, one only skipped, one unanswered."""
    store = LabelStore(tmp_path / "labels.db")
    ids = store.add_comparisons([f"q{i}" for i in range(5)], [[f"q{i} a", f"q{i} b", f"q{i} c"] for i in range(5)],
                                task="sentiment", round=0)
    store.add_answers([
        Answer(ids[0], "ann", 1), Answer(ids[0], "bob", 2), Answer(ids[0], "cy", 2),  # majority 2
        Answer(ids[1], "ann", 0), Answer(ids[1], "bob", 1),  # tie: the earliest answer wins
        Answer(ids[2], "ann", 2, ranking=[2, 0, 1]),
        Answer(ids[3], "ann", skipped=True),
    ])
    return store


@pytest.mark.parametrize("aggregate", ["majority", "first", "all"])
def test_store_export_reads_back_as_to_dataset(answered_store, tmp_path, aggregate, caplog):
    path = tmp_path / "export.jsonl"
    answered_store.export_jsonl(path)
    with caplog.at_level(logging.WARNING, logger="ziegler_trl.reward.labels"):
        loaded = load_label_dataset(str(path), aggregate=aggregate)
    assert loaded[:] == answered_store.to_dataset(aggregate)[:]
    assert "left out 2 of 5 comparisons with no answer other than a skip, and 1 skipped answers" in caplog.text
    # the admin page serves the same text; a Dataset or rows in memory work as well
    assert load_label_dataset([json.loads(line) for line in answered_store.export_jsonl().split("\n") if line],
                              aggregate=aggregate)[:] == loaded[:]


def test_store_export_majority_rows(answered_store, tmp_path):
    path = tmp_path / "export.jsonl"
    answered_store.export_jsonl(path)
    loaded = load_label_dataset(str(path))
    assert loaded["prompt"] == ["q0", "q1", "q2"] and loaded["best"] == [2, 0, 2]
    assert "ranking" not in loaded.column_names  # not every row has one, as to_dataset


def test_store_export_errors(answered_store, tmp_path):
    records = [json.loads(line) for line in answered_store.export_jsonl().split("\n") if line]
    records[1]["answers"][0]["best"] = 7
    path = _jsonl(tmp_path / "export.jsonl", records)
    with pytest.raises(LabelFileError, match=r"export.jsonl, line 2, field 'answers\[0\]\.best': must be an integer "
                                             r"in \[0, 3\) \(got 7\)"):
        load_label_dataset(path)
    records[1]["answers"][0]["best"] = 0
    records[1]["answers"].append({"labeler": "ann", "best": 2})  # the same labeler again, differently
    with pytest.raises(LabelFileError, match=r"line 2, field 'answers\[2\]': labeler 'ann' already answered"):
        load_label_dataset(_jsonl(tmp_path / "export.jsonl", records))
    for record in records:
        record["answers"] = [{"labeler": "ann", "skipped": True}]
    with pytest.raises(LabelFileError, match=r"none of its 5 comparisons has an answer other than a skip"):
        load_label_dataset(_jsonl(tmp_path / "export.jsonl", records))


def test_store_export_and_dataset_file_roundtrip_every_line_breaking_character(tmp_path):
    breakers = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\r"
    text = "".join(f"<{c}>" for c in breakers)
    store = LabelStore(tmp_path / "labels.db")
    (cid,) = store.add_comparisons([f"p{text}"], [[f"a{text}", f"b{text}"]])
    store.add_answer(cid, "ann", 1)
    store.export_jsonl(tmp_path / "export.jsonl")
    expected = {"prompt": [f"p{text}"], "completions": [[f"a{text}", f"b{text}"]], "best": [1]}
    assert load_label_dataset(str(tmp_path / "export.jsonl"))[:] == expected
    from ziegler_trl.labeling.commands import export

    assert export(store.path, tmp_path / "rows.jsonl", dataset=True) == 1
    written = (tmp_path / "rows.jsonl").read_text(encoding="utf-8")
    assert len(written.splitlines()) == 1 and not set(breakers) & set(written)
    assert load_label_dataset(str(tmp_path / "rows.jsonl"))[:] == expected


# -- TRL preference data ---------------------------------------------------------------------------------------------
def test_trl_explicit_prompt(tmp_path):
    rows = [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "score_chosen": 9.0},
            {"prompt": "Grass is", "chosen": " green.", "rejected": " blue.", "score_chosen": 8.0}]
    loaded = load_label_dataset(_jsonl(tmp_path / "pref.jsonl", rows))
    assert loaded[:] == {"prompt": ["The sky is", "Grass is"], "completions": [[" blue.", " green."],
                                                                               [" green.", " blue."]], "best": [0, 0]}
    assert load_label_dataset(Dataset.from_list(rows))[:] == loaded[:]


def test_trl_implicit_prompt_is_the_longest_common_prefix(tmp_path):
    rows = [{"chosen": "Q: colour of the sky? A: blue", "rejected": "Q: colour of the sky? A: green"},
            {"chosen": "Say hi. Hi there", "rejected": "Say hi. Good day"},
            {"chosen": "ab", "rejected": "abc"},  # one is a prefix of the other: each keeps a character
            {"chosen": "x y", "rejected": "x yz"}]
    loaded = load_label_dataset(_jsonl(tmp_path / "pref.jsonl", rows))
    assert loaded["prompt"] == ["Q: colour of the sky? A:", "Say hi.", "a", "x"]
    assert loaded["completions"] == [[" blue", " green"], [" Hi there", " Good day"], ["b", "bc"], [" y", " yz"]]
    assert loaded["best"] == [0, 0, 0, 0]


def test_trl_conversational_explicit_and_implicit(tmp_path):
    user = {"role": "user", "content": "What colour is the sky?"}
    blue, green = {"role": "assistant", "content": "Blue."}, {"role": "assistant", "content": "Green."}
    implicit = [{"chosen": [user, blue], "rejected": [user, green]}]
    explicit = [{"prompt": [user], "chosen": [blue], "rejected": [green]}]
    # a text 'prompt' beside full conversations is ignored and the prompt extracted, as TRL's maybe_extract_prompt
    mixed = [{"prompt": "What colour is the sky?", "chosen": [user, blue], "rejected": [user, green]}]
    want = {"prompt": [[user]], "completions": [[[blue], [green]]], "best": [0]}
    for rows in (implicit, explicit, mixed):
        assert load_label_dataset(_jsonl(tmp_path / "conv.jsonl", rows))[:] == want
        assert load_label_dataset(Dataset.from_list(rows))[:] == want
    with pytest.raises(LabelFileError, match=r"record 0, field 'prompt': 'chosen' and 'rejected' share no first"):
        load_label_dataset([{"chosen": [blue], "rejected": [green]}])


@pytest.mark.parametrize(
    "row, message",
    [
        ({"chosen": "a"}, r"line 2, field 'rejected': missing"),
        ({"chosen": None, "rejected": "b"}, r"line 2, field 'chosen': missing"),
        ({"chosen": 5, "rejected": "b"}, r"line 2, field 'chosen': must be a string or a non-empty list .* \(got 5\)"),
        ({"chosen": "a", "rejected": [{"role": "user", "content": "b"}]}, r"line 2, field 'rejected': must be a string, like 'chosen'"),
        ({"chosen": [{"role": "user"}], "rejected": []}, r"line 2, field 'chosen': must be a string or a non-empty list"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, r"line 2, field 'prompt': must be a string or a non-empty list"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "completions": ["a", "b"]},
         r"line 2: has the fields of both a TRL preference row and a best-of-K row"),
        ({"prompt": "", "chosen": "", "rejected": "b"}, r"line 2, field 'completions': an empty completion after an empty prompt"),
    ],
)
def test_trl_preference_errors(tmp_path, row, message):
    path = _jsonl(tmp_path / "pref.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(LabelFileError, match=message):
        load_label_dataset(path)


def test_trl_preference_data_trains_a_reward_model(tmp_path, tiny_model_dir, tiny_tokenizer):
    from ziegler_trl import BestOfKRewardConfig, BestOfKRewardTrainer

    rows = [{"chosen": f"The cat sat. It was good {i}.", "rejected": f"The cat sat. It was bad {i}."} for i in range(8)]
    dataset = load_label_dataset(_jsonl(tmp_path / "pref.jsonl", rows))
    assert set(dataset["prompt"]) == {"The cat sat. It was"}
    args = BestOfKRewardConfig(output_dir=str(tmp_path / "rm"), per_device_train_batch_size=4, max_steps=2,
                               report_to="none", save_strategy="no", logging_steps=1, seed=0,
                               dataloader_pin_memory=False)
    trainer = BestOfKRewardTrainer(str(tiny_model_dir), args=args, train_dataset=dataset,
                                   processing_class=tiny_tokenizer)
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0


def test_messages_keep_role_and_content_only():
    """Other keys of a message may differ in type from row to row; the rows must still form one table."""
    user = lambda **extra: {"role": "user", "content": "hi", **extra}  # noqa: E731
    reply = {"role": "assistant", "content": "hello"}
    rows = [{"chosen": [user(name=1), reply], "rejected": [user(name=1), {**reply, "content": "go"}]},
            {"chosen": [user(name="x"), reply], "rejected": [user(name="x"), {**reply, "content": "no"}]}]
    loaded = load_label_dataset(rows)
    assert loaded["prompt"] == [[{"role": "user", "content": "hi"}]] * 2
