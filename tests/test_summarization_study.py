"""The summarization study (`eval/summarization_study.py`) end to end at `--scale smoke`, its resume and settings
check, the ROUGE labeler, the labeler's 2-way preference, and the posts' query budget."""

import dataclasses
import json

import pytest

from tests.conftest import load_script
from ziegler_trl.errors import UserInputError
from ziegler_trl.evaluation.rouge_scores import rouge_per_document
from ziegler_trl.labeling import LabelStore
from ziegler_trl.models import load_tokenizer
from ziegler_trl.summarization_study import (
    ReferenceRougeLabeler,
    preset,
    rouge_avg,
    run_study,
)
from ziegler_trl.summarization_study.labeler import StandardizedLabelerScore
from ziegler_trl.summarization_study.report import labeler_preference
from ziegler_trl.summarization_study.stages import stable_content


def test_smoke_study_reports_and_resumes(tmp_path, capsys):
    out = tmp_path / "study"
    study = load_script("eval/summarization_study.py").main
    assert study(["--scale", "smoke", "--output_dir", str(out)]) == 0
    first = json.loads((out / "stages.json").read_text())
    assert list(first) == ["posts", "labels", "reward", "policy", "samples", "policy_direct", "samples_direct"]

    posts = json.loads((out / "posts.json").read_text())
    assert len(posts["held_out"]) == 8 and len(posts["train"]) == 32  # 40 builtin posts, none rejected or repeated
    assert not {p["post"] for p in posts["held_out"]} & {p["post"] for p in posts["train"]}
    held_out = [json.loads(line) for line in (out / "held_out.jsonl").read_text().splitlines()]
    assert held_out == posts["held_out"]

    store = LabelStore(out / "labels.sqlite")
    comparisons = store.comparisons(round=0)
    answers = store.answers([c.id for c in comparisons])
    store.close()
    assert len(comparisons) == 16 and all(len(c.completions) == 4 for c in comparisons)
    references = {p["post"]: p["summary"] for p in posts["train"]}
    for answer in (a for a in answers if not a.skipped):  # the labeler's pick is a best ROUGE completion
        comparison = next(c for c in comparisons if c.id == answer.comparison_id)
        scores = rouge_avg(comparison.completions, [references[comparison.prompt]] * 4)
        assert scores[answer.best] == max(scores) and sorted(scores)[-2] < max(scores)

    rows = {}
    for file in ("samples.jsonl", "samples_direct.jsonl"):
        for line in (out / file).read_text().splitlines():
            record = json.loads(line)
            rows.setdefault((file, record["row"]), []).append(record["index"])
    assert rows == {("samples.jsonl", "zero-shot"): list(range(8)), ("samples.jsonl", "RL"): list(range(8)),
                    ("samples_direct.jsonl", "RL-direct"): list(range(8))}
    scale = json.loads((out / "direct_reward.json").read_text())
    scores = [s for c in comparisons for s in rouge_avg(c.completions, [references[c.prompt]] * 4)]
    assert scale["samples"] == 64 and scale["mean"] == pytest.approx(sum(scores) / 64)
    for name in ("table4.md", "copying.md", "novelty.png", "results.json", "summarization.md"):
        assert (out / name).stat().st_size > 0
    table4 = (out / "table4.md").read_text()
    assert [line.split("|")[1].strip() for line in table4.splitlines() if line.startswith("| ")][1:] == [
        "lead-3", "zero-shot", "RL", "RL-direct"]
    results = json.loads((out / "results.json").read_text())
    assert set(results["copying"]) == {"reference", "lead-3", "zero-shot", "RL", "RL-direct"}
    assert results["copying"]["lead-3"]["novel_1gram"] == 0.0  # lead-3 copies the post's own words
    assert results["rouge"]["lead-3"]["rouge1"] == pytest.approx(float(table4.split("| lead-3 | 8 | ")[1][:5]), abs=0.01)
    for row in ("RL", "RL-direct"):
        assert results["ppo"][row]["updates"] == 1 and results["labeler_preference"][row]["n"] == 8
    report = (out / "summarization.md").read_text()
    assert "python eval/summarization_study.py --scale smoke" in report and "Commit: `" in report

    # A rerun skips every stage and writes the same tables.
    capsys.readouterr()
    assert study(["--scale", "smoke", "--output_dir", str(out)]) == 0
    log = capsys.readouterr().out
    for stage in first:
        assert f"[study] {stage}: done in an earlier run" in log
    assert json.loads((out / "stages.json").read_text()) == first
    assert (out / "table4.md").read_text() == table4
    invocations = json.loads((out / "invocations.json").read_text())
    assert [i["command"] for i in invocations] == [f"python eval/summarization_study.py --scale smoke --output_dir {out}"] * 2
    assert json.loads((out / "results.json").read_text())["invocations"] == invocations


def test_a_folder_keeps_its_settings(tmp_path):
    cfg = preset("smoke", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "num_comparisons": 99}))
    with pytest.raises(UserInputError, match="num_comparisons"):
        run_study(cfg)


def test_bad_settings_are_refused():
    with pytest.raises(UserInputError, match="held_out_posts"):
        dataclasses.replace(preset("smoke"), held_out_posts=40)
    with pytest.raises(UserInputError, match="policy_batch_size"):
        dataclasses.replace(preset("smoke"), policy_batch_size=4)
    with pytest.raises(UserInputError, match="scale"):
        preset("tpu")


def test_rouge_labeler_picks_the_closest_summary_and_skips_ties():
    reference = "my landlord kept the deposit and I want it back"
    labeler = ReferenceRougeLabeler({"post": reference}, seed=0)
    completions = ["sunny weather today", "landlord kept my deposit", "I want the deposit back from my landlord"]
    scores = labeler.scores(["post"], [completions])[0]
    expected = rouge_per_document(completions, [reference] * 3)
    assert scores == pytest.approx(list((expected["rouge1"] + expected["rouge2"] + expected["rougeLsum"]) / 3))
    assert labeler.label(["post"], [completions]) == [2]
    assert scores[0] == 0.0
    (tie,) = labeler.answer([type("C", (), {"id": 1, "prompt": "post", "completions": ["cat", "dog"]})()])
    assert tie.skipped
    with pytest.raises(KeyError, match="no reference TL;DR"):
        labeler.label(["another post"], [completions])


def test_direct_reward_is_the_labelers_score_standardised():
    labeler = ReferenceRougeLabeler({"post": "my landlord kept the deposit"})
    completions = ["sunny weather today", "landlord kept my deposit"]
    raw = labeler.score(["post", "post"], completions)
    reward = StandardizedLabelerScore(labeler, mean=10.0, std=4.0)
    assert reward(["post", "post"], completions) == pytest.approx([(v - 10.0) / 4.0 for v in raw])
    with pytest.raises(ValueError, match="std 0"):
        StandardizedLabelerScore(labeler, mean=0.0, std=0.0)


def test_labeler_preference_counts_ties_half():
    result = labeler_preference([3.0, 1.0, 2.0, 2.0], [1.0, 3.0, 2.0, 0.0])
    assert result["win_rate"] == 2.5 / 4 and result["ties"] == 1 and result["n"] == 4
    assert result["low"] < 0.625 < result["high"]


def test_post_content_is_stable_under_reformatting():
    tokenizer = load_tokenizer("embedded")
    cfg = dataclasses.replace(preset("smoke"), query_length=20)
    text = "My roommate never pays the electricity bill on time, and now the company threatens to cut us off."
    content = stable_content(text, cfg, tokenizer)
    assert len(tokenizer.encode(content, add_special_tokens=False)) <= 20 and text.startswith(content[:40])
    assert stable_content(content, cfg, tokenizer) == content
    assert stable_content("", cfg, tokenizer) is None
