import copy
import dataclasses
import json
import logging
import zipfile

import pytest
import torch

from tests.conftest import SHARED_DATA
from ziegler_trl import TASKS, TaskSpec, UserInputError, format_query, load_task_texts, truncate_responses
from ziegler_trl.errors import DataFileError
from ziegler_trl.tasks import clean_cnndm, post_from_carperai_prompt, single_token_id


def test_paper_values():
    s, d, t, c = TASKS["sentiment"], TASKS["descriptiveness"], TASKS["tldr"], TASKS["cnndm"]
    assert (s.query_length, s.response_length, s.temperature, s.truncate_token, s.truncate_after) == (64, 24, 0.7, ".", 16)
    assert (d.query_length, d.response_length, d.start_text, d.end_text) == (64, 24, ".", ".")
    assert (t.query_length, t.response_length, t.temperature, t.query_suffix) == (500, 75, 0.7, "\n\nTL;DR:")
    assert (t.truncate_token, t.truncate_after, t.query_prefix) == ("\n", 55, "")
    assert (c.temperature, c.query_prefix, c.query_suffix, c.end_text) == (0.5, "Article:\n\n", "\n\nTL;DR:", "\n")
    assert all(task.penalty_reward == -1.0 for task in TASKS.values())


def test_book_query_starts_after_first_period_and_ends_at_last(tiny_tokenizer):
    text = "broken start. The cat sat on the mat. It was a good day. A happy dog ran"
    query = format_query(text, "sentiment", tiny_tokenizer)
    assert tiny_tokenizer.decode(query.ids) == " The cat sat on the mat. It was a good day."
    assert query.reward_ids == query.ids  # no prefix/suffix for books
    assert format_query("no sentence end here", "sentiment", tiny_tokenizer) is None


def test_book_text_whose_only_period_is_its_last_token_is_kept_whole(tiny_tokenizer):
    # The paper's code starts after the first "." unless that is the text's last token: then the text stays whole
    query = format_query("The cat sat on the mat.", "sentiment", tiny_tokenizer)
    assert tiny_tokenizer.decode(query.ids) == "The cat sat on the mat."
    assert tiny_tokenizer.decode(format_query(".", "sentiment", tiny_tokenizer).ids) == "."
    # ... but a text longer than the budget loses that "." to the cut, and has no sentence end left
    assert format_query("word " * 80 + "end.", "sentiment", tiny_tokenizer) is None
    assert format_query("It rained. And then", "sentiment", tiny_tokenizer) is None  # no "." after the first
    assert format_query("", "sentiment", tiny_tokenizer) is None


def test_book_query_respects_budget(tiny_tokenizer):
    text = "x. " + "The cat sat. " * 100
    query = format_query(text, "sentiment", tiny_tokenizer)
    assert len(query.ids) <= 64
    assert query.ids[-1] == single_token_id(tiny_tokenizer, ".")


def test_summarization_query_has_prefix_suffix_and_reward_view_has_not(tiny_tokenizer):
    article = "The market fell.\nStocks dropped.\n" + "word " * 1000
    query = format_query(article, "cnndm", tiny_tokenizer)
    decoded = tiny_tokenizer.decode(query.ids)
    assert decoded.startswith("Article:\n\nThe market fell.")
    assert decoded.endswith("Stocks dropped.\n\n\nTL;DR:")  # cut at the last newline within the budget
    assert len(query.ids) <= 500
    assert tiny_tokenizer.decode(query.reward_ids) == "The market fell.\nStocks dropped.\n"
    tldr = format_query("short post", "tldr", tiny_tokenizer)
    assert tiny_tokenizer.decode(tldr.ids) == "short post\n\nTL;DR:"


def test_summarization_content_gets_the_whole_query_length_with_prefix_and_suffix_on_top(tiny_tokenizer):
    # The paper's code cuts the content to query_length, pads it there, and adds prefix/suffix around it
    suffix = tiny_tokenizer.encode("\n\nTL;DR:", add_special_tokens=False)
    prefix = tiny_tokenizer.encode("Article:\n\n", add_special_tokens=False)
    post = " ".join(f"w{i}" for i in range(600))
    tldr = format_query(post, "tldr", tiny_tokenizer)
    content = tiny_tokenizer.encode(post, add_special_tokens=False)[:500]
    assert tldr.reward_ids == content and tldr.ids == content + suffix
    article = post + "\n" + "tail " * 300
    cnndm = format_query(article, "cnndm", tiny_tokenizer)
    assert cnndm.reward_ids == content and cnndm.ids == prefix + content + suffix  # no newline in the budget: cut
    budget = len(tiny_tokenizer.encode("one\ntwo\n", add_special_tokens=False)) + 1  # reaches into "three"
    short = format_query("one\ntwo\nthree", dataclasses.replace(TASKS["cnndm"], query_length=budget), tiny_tokenizer)
    assert tiny_tokenizer.decode(short.reward_ids) == "one\ntwo\n"  # cut at the budget's last newline


def test_truncate_after_first_truncate_token_at_or_after_index(tiny_tokenizer):
    dot = single_token_id(tiny_tokenizer, ".")
    pad = tiny_tokenizer.pad_token_id
    a = 5  # a filler token id that is neither '.' nor pad
    row_valid = [a] * 3 + [dot] + [a] * 14 + [dot] + [a] * 5  # '.' at 3 (< 16, ignored) and at 18
    row_invalid = [a] * 10 + [dot] + [a] * 13  # only '.' before index 16 → invalid
    row_edge = [a] * 16 + [dot] + [a] * 7  # '.' exactly at index 16 counts
    truncated, valid = truncate_responses(torch.tensor([row_valid, row_invalid, row_edge]), "sentiment", tiny_tokenizer)
    assert valid.tolist() == [True, False, True]
    assert truncated[0].tolist() == row_valid[:19] + [pad] * 5
    assert truncated[1].tolist() == row_invalid  # invalid responses are left whole; they score −1
    assert truncated[2].tolist() == row_edge[:17] + [pad] * 7


def test_stop_at_eos_ends_responses_before_the_first_eos(tiny_tokenizer):
    dot, eos, pad = single_token_id(tiny_tokenizer, "."), tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    assert len({dot, eos, pad}) == 3
    a = 5
    task = dataclasses.replace(TASKS["sentiment"], stop_at_eos=True)
    row_eos_first = [a] * 4 + [eos] + [a] * 13 + [dot] + [a] * 5  # EOS at 4 beats the '.' at 18
    row_dot_first = [a] * 18 + [dot] + [eos] + [a] * 4  # the '.' at 18 ends it; the EOS after is padding anyway
    row_eos_at_0 = [eos] + [a] * 23  # an empty response that ended properly
    row_neither = [a] * 24  # no '.' in the window, no EOS: invalid, left whole
    rows = torch.tensor([row_eos_first, row_dot_first, row_eos_at_0, row_neither])
    truncated, valid = truncate_responses(rows, task, tiny_tokenizer)
    assert valid.tolist() == [True, True, True, False]
    assert truncated[0].tolist() == [a] * 4 + [pad] * 20  # the EOS itself is dropped
    assert truncated[1].tolist() == row_dot_first[:19] + [pad] * 5
    assert truncated[2].tolist() == [pad] * 24
    assert truncated[3].tolist() == row_neither
    # The paper's rule (off): the EOS is an ordinary token.
    plain, plain_valid = truncate_responses(rows, "sentiment", tiny_tokenizer)
    assert plain_valid.tolist() == [True, True, False, False]
    assert plain[0].tolist() == row_eos_first[:19] + [pad] * 5


def test_task_without_truncate_token_keeps_whole_responses_unless_stopping_at_eos(tiny_tokenizer):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    bare = TaskSpec("prompt", 0, 6, 1.0, truncate_token="", truncate_after=0)
    rows = torch.tensor([[5, 6, eos, 7, 8, 9], [5, 6, 7, 8, 9, 10]])
    truncated, valid = truncate_responses(rows, bare, tiny_tokenizer)
    assert torch.equal(truncated, rows) and valid.all()
    truncated, valid = truncate_responses(rows, dataclasses.replace(bare, stop_at_eos=True), tiny_tokenizer)
    assert truncated.tolist() == [[5, 6, pad, pad, pad, pad], [5, 6, 7, 8, 9, 10]] and valid.all()


def test_stop_at_eos_needs_an_eos_token(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.eos_token = None
    task = dataclasses.replace(TASKS["sentiment"], stop_at_eos=True)
    with pytest.raises(ValueError, match="task 'sentiment' stops at EOS, but the tokenizer has no eos_token_id"):
        truncate_responses(torch.tensor([[5] * 24]), task, tokenizer)


def test_clean_cnndm_headers():
    assert clean_cnndm("(CNN)Another one for the file.") == "Another one for the file."
    assert clean_cnndm("LONDON, England (CNN) -- The queen said.") == "The queen said."
    dm = "By . Jane Doe . PUBLISHED: . 10:01 EST, 2 May 2013 . | . UPDATED: . 11:12 EST, 2 May 2013 . The dog barked."
    assert clean_cnndm(dm) == "The dog barked."
    assert clean_cnndm("By . Jane Doe . The dog barked.") == "The dog barked."
    assert clean_cnndm("Nothing to clean (CNN) here.") == "Nothing to clean (CNN) here."


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data samples not present")
def test_jsonl_adapters_on_shared_samples(tiny_tokenizer):
    books = load_task_texts("sentiment", str(SHARED_DATA / "books_sample.jsonl"))
    cnndm = load_task_texts("cnndm", str(SHARED_DATA / "cnndm_sample.jsonl"))
    tldr = load_task_texts("tldr", str(SHARED_DATA / "tldr_sample.jsonl"), limit=10)
    assert len(books) == 200 and "reference" not in books.column_names
    assert len(cnndm) == 200 and not cnndm[0]["text"].startswith("(CNN)") and cnndm[0]["reference"]
    assert len(tldr) == 10
    queries = [format_query(t, "sentiment", tiny_tokenizer) for t in books["text"][:20]]
    kept = [q for q in queries if q is not None]
    assert kept and all(len(q.ids) <= 64 for q in kept)


def test_carperai_prompt_gives_the_post_alone():
    prompt = "SUBREDDIT: r/dating \nTITLE: Call her? POST: no\nPOST: We met in May.\n\nShe moved.  TL;DR:"
    assert post_from_carperai_prompt(prompt) == "We met in May.\n\nShe moved."
    assert post_from_carperai_prompt("SUBREDDIT: r/a\nTITLE: t\nPOST: body\nTL;DR: ") == "body"
    for malformed in ("We met in May. TL;DR:", "SUBREDDIT: r/a\nTITLE: t\nPOST: body", "TITLE: t\nPOST: b TL;DR:"):
        with pytest.raises(ValueError, match=r'not a prompt of the form "SUBREDDIT: …\\nTITLE: …\\nPOST: … TL;DR'):
            post_from_carperai_prompt(malformed)


def test_hub_source_streams_the_first_rows_and_reads_carperai_posts(tmp_path, tiny_tokenizer):
    # A local dataset folder stands in for the Hub repository: `load_dataset` reads both through the same builder
    hub = tmp_path / "openai_summarize_tldr"
    hub.mkdir()
    rows = [{"prompt": f"SUBREDDIT: r/a\nTITLE: t{i}\nPOST: Post number {i}.\nTL;DR:", "label": f" ref {i}"}
            for i in range(3)]
    (hub / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    source = "CarperAI/openai_summarize_tldr"
    carperai = dataclasses.replace(TASKS["tldr"].hf_sources[source], path=str(hub))
    task = dataclasses.replace(TASKS["tldr"], hf_sources={source: carperai})

    first = load_task_texts(task, source, limit=2)
    assert first.to_dict() == {"text": ["Post number 0.", "Post number 1."], "reference": [" ref 0", " ref 1"]}
    assert load_task_texts(task, source)["text"] == [f"Post number {i}." for i in range(3)]
    query = format_query(first["text"][0], task, tiny_tokenizer)
    assert tiny_tokenizer.decode(query.ids) == "Post number 0.\n\nTL;DR:"  # one suffix: the task's own

    rows[1]["prompt"] = "Post number 1. TL;DR:"
    (hub / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataFileError, match=r"CarperAI/openai_summarize_tldr \(split 'train'\), record 1, field "
                                            r"'prompt': not a prompt of the form .* \(got 'Post"):
        load_task_texts(task, source)
    renamed = dataclasses.replace(task, hf_sources={source: dataclasses.replace(carperai, text_field="post")})
    with pytest.raises(DataFileError, match=r"field 'post': has no column 'post' \(columns: \['prompt', 'label'\]\)"):
        load_task_texts(renamed, source, limit=1)


def test_webis_tldr_is_read_from_its_archive_not_its_loading_script(tmp_path, caplog):
    # The repository's rows come from a loading script that current `datasets` refuses to run; its hosted zip of
    # JSON lines is read instead. A local zip of the same shape stands in for the `hf://` URL (same fsspec path).
    webis = TASKS["tldr"].hf_sources["webis/tldr-17"]
    assert webis.archive.startswith("hf://datasets/webis/tldr-17@") and webis.archive.endswith(".zip")
    records = [{"author": "a", "content": "My post 0.", "summary": "sum 0", "title": "t"},
               {"author": "b", "content": "My post 1.", "summary": "sum 1"},  # comments carry no title
               {"content": "My post 2.", "summary": "sum 2", "subreddit": "r"}]
    archive = tmp_path / "corpus-webis-tldr-17.zip"

    def write(lines: list[str]) -> None:
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("corpus-webis-tldr-17.json", "".join(lines))

    write([json.dumps(r) + "\n" for r in records])
    task = dataclasses.replace(TASKS["tldr"], hf_sources={"webis/tldr-17": dataclasses.replace(webis, archive=str(archive))})
    assert load_task_texts(task, "webis/tldr-17", limit=2).to_dict() == {
        "text": ["My post 0.", "My post 1."], "reference": ["sum 0", "sum 1"]}
    assert load_task_texts(task, "webis/tldr-17")["reference"] == ["sum 0", "sum 1", "sum 2"]
    with pytest.raises(UserInputError, match=r"webis/tldr-17 has one split, 'train'; got split 'test'"):
        load_task_texts(task, "webis/tldr-17", split="test")

    # A corpus row without a summary is left out and counted (its user cannot fix the corpus); a JSONL file's stops
    write([json.dumps(records[0]) + "\n", '{"content": "x", "summary": ""}\n', '{"content": "y"}\n',
           json.dumps(records[1]) + "\n"])
    with caplog.at_level(logging.WARNING, logger="ziegler_trl.tasks"):
        assert load_task_texts(task, "webis/tldr-17")["text"] == ["My post 0.", "My post 1."]
    assert "corpus-webis-tldr-17.zip: left out 2 records with an empty or missing content or summary" in caplog.text
    write(['{"content": "x", "summary": " "}\n'])
    with pytest.raises(DataFileError, match=r"zip: no records with a non-empty content and summary"):
        load_task_texts(task, "webis/tldr-17")
    write([json.dumps(records[0]) + "\n", "{oops\n"])
    assert load_task_texts(task, "webis/tldr-17", limit=1)["text"] == ["My post 0."]  # stops before the bad line
    with pytest.raises(DataFileError, match=r"zip!corpus-webis-tldr-17\.json, line 2: not valid JSON"):
        load_task_texts(task, "webis/tldr-17")
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("README.txt", "no data")
    with pytest.raises(DataFileError, match=r"expected one JSON-lines file in the archive, found \[\]"):
        load_task_texts(task, "webis/tldr-17")


def test_jsonl_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    cases = [
        ('{"article": "ok", "highlights": "h"}\n{"article": "no highlights"}\n', "cnndm",
         r"bad\.jsonl, line 2, field 'highlights': missing \(task 'cnndm' reads \['article', 'highlights'\]\)"),
        ('{"text": 3}\n', "sentiment", r"bad\.jsonl, line 1, field 'text': must be a non-empty string \(got 3\)"),
        ('{"text": "  "}\n', "sentiment", r"line 1, field 'text': must be a non-empty string"),
        ("{oops\n", "sentiment", r"bad\.jsonl, line 1: not valid JSON \(Expecting property name"),
        ('\n\n["a"]\n', "sentiment", r"bad\.jsonl, line 3: expected a JSON object, got list"),
        ('{"text": "a\\udfff b."}\n', "sentiment", r"line 1, field 'text': holds a lone surrogate"),
        ('{"text": ' + "[" * 5000 + "]" * 5000 + "}\n", "sentiment", r"line 1: not readable JSON \(nested too deep\)"),
        ('{"text": ' + "1" * 4301 + "}\n", "sentiment", r"line 1: not readable JSON \(Exceeds the limit"),
        ("", "sentiment", r"bad\.jsonl: no records"),
    ]
    for text, task, message in cases:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DataFileError, match=message):
            load_task_texts(task, str(path))
    path.write_bytes(b'{"text": "ok."}\n{"text": "caf\xe9."}\n')  # Latin-1, not UTF-8
    with pytest.raises(DataFileError, match=r"bad\.jsonl, line 2: not valid UTF-8 \(bytes b'\\xe9'"):
        load_task_texts("sentiment", str(path))
    path.write_bytes('{"text": "ok."}\n'.encode("utf-16-le"))
    with pytest.raises(DataFileError, match=r"line 1: holds NUL bytes: is it UTF-16 or UTF-32 without a byte-order"):
        load_task_texts("sentiment", str(path))
    with pytest.raises(DataFileError, match=r"missing\.jsonl: no such file"):
        load_task_texts("sentiment", str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataFileError, match=r"bookz: not a file, 'builtin', nor one of the Hub sources of task .sentiment."):
        load_task_texts("sentiment", "bookz")
    with pytest.raises(UserInputError, match="Unknown task"):
        load_task_texts("poetry", str(path))


def test_jsonl_texts_read_byte_order_marks_and_line_separators(tmp_path):
    path = tmp_path / "texts.jsonl"
    texts = ["One.\u2028Two\u2029three\x85four.", "Caf\u00e9 \u2603."]
    body = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\r\n" for t in texts)  # raw U+2028 in a line
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32"):
        path.write_bytes(body.encode(encoding))
        assert load_task_texts("sentiment", str(path))["text"] == texts
