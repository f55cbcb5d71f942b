import pytest

from ziegler_trl.evaluation import copy_stats, copy_table, has_preamble

SOURCE = "The quick brown fox jumps. It lands on a log! Then the fox sleeps."


def test_novelty_ignores_case_and_punctuation():
    stats = copy_stats("The Cat sat, on the mat!", "the cat SAT on -- the mat")
    assert [stats[f"novel_{n}gram"] for n in range(1, 5)] == [0.0, 0.0, 0.0, 0.0]
    assert stats["novel_sentences"] == 0.0 and stats["copied_whole"] is True


def test_summary_of_copied_sentences():
    stats = copy_stats(SOURCE, "Then the fox sleeps. It lands on a log.")
    assert [stats[f"novel_{n}gram"] for n in range(1, 5)] == [0.0, 0.0, 0.0, 0.0]
    assert stats["novel_sentences"] == 0.0
    assert stats["copied_whole"] is True
    assert stats["first3_copied"] is False  # it skips the source's opening


def test_shuffled_words_have_novel_bigrams_but_no_novel_unigrams():
    stats = copy_stats("the quick brown fox jumps", "fox brown quick the jumps")
    assert stats["novel_1gram"] == 0.0
    assert stats["novel_2gram"] == 1.0  # fox brown, brown quick, quick the, the jumps
    assert stats["novel_sentences"] == 1.0 and stats["copied_whole"] is False


def test_partial_novelty_counts_and_sentence_boundaries():
    # "log then" would be a novel bigram across the summary's sentence boundary: it is not counted.
    stats = copy_stats(SOURCE, "It lands on a log. Then the cat sleeps.")
    # bigrams: it lands, lands on, on a, a log | then the, the cat*, cat sleeps*  -> 2 novel of 7
    assert stats["novel_2gram"] == pytest.approx(2 / 7)
    assert stats["novel_1gram"] == pytest.approx(1 / 9)  # "cat"
    assert stats["novel_sentences"] == 0.5 and stats["copied_whole"] is False


def test_short_summary_has_no_4grams_and_first3():
    stats = copy_stats(SOURCE, "The quick brown.")
    assert stats["novel_4gram"] is None
    assert stats["first3_copied"] is True
    assert copy_stats(SOURCE, "")["novel_sentences"] is None
    assert copy_stats(SOURCE, "")["copied_whole"] is False


def test_repetition_within_summary():
    # 3-grams: the cat sat, cat sat the, sat the cat, the cat sat -> one of four repeats an earlier one
    assert copy_stats("x", "the cat sat the cat sat")["repeated_3gram"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi reddit, long time lurker.", True),
        ("hello all", True),
        ("Hey! So...", True),
        ("Ok so here goes", True),
        ("Okay, background.", True),
        ("So my wife and I", True),
        ("Sorry for the format", False),
        ("I think so", False),
        ("Hiking is fun", False),
    ],
)
def test_tldr_preamble(source, expected):
    assert has_preamble(source, "tldr") is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("WASHINGTON: The president said", True),
        ("EXCLUSIVE: Star weds", True),
        ("By Jane Doe: The story", True),
        ("The president of France said: no", False),
        ("Police said on Monday", False),
    ],
)
def test_cnndm_preamble(source, expected):
    assert has_preamble(source, "cnndm") is expected


def test_preamble_needs_a_summarization_task():
    with pytest.raises(ValueError, match="not 'sentiment'"):
        has_preamble("Hi there", "sentiment")


def test_copy_table_aggregates_and_splits_by_preamble():
    sources = ["Hi all. My cat is ill today.", "My dog ran away today."]
    summaries = ["My cat is ill today.", "My dog ran away."]
    table = copy_table(sources, summaries, "tldr")
    assert table["n"] == 2
    assert table["novel_1gram"] == 0.0 and table["copied_whole"] == 1.0
    assert table["preamble_rate"] == 0.5
    assert table["first3_copied_preamble"] == 0.0  # skipped "Hi all."
    assert table["first3_copied_no_preamble"] == 1.0
    assert table["first3_copied"] == 0.5
    with pytest.raises(ValueError, match="2 sources but 1 summaries"):
        copy_table(sources, summaries[:1])
