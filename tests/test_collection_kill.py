"""A kill -9 in the middle of a collection round's labeling repeats at most one batch of labeler calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from tests.conftest import tiny_llama
from ziegler_trl.collection import collect_round
from ziegler_trl.labeling import LabelStore, ScorerLabeler
from ziegler_trl.tasks import Query

ROOT = Path(__file__).resolve().parents[1]
N, LABEL_BATCH = 24, 4

# One collection round with a labeler that stands for a paid API: it appends one line per call (the prompts it was
# asked about) to a file, fsynced before it answers, then takes `delay` seconds to "respond". The rerun uses the
# same prompts and log, in the test's own process.
ROUND = textwrap.dedent(
    f"""
    import os, sys, time
    import torch
    from tests.conftest import build_tiny_tokenizer, tiny_llama
    from ziegler_trl.collection import collect_round
    from ziegler_trl.labeling import LabelStore, ScorerLabeler
    from ziegler_trl.tasks import Query

    store_path, calls_path, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    torch.set_num_threads(1)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    policy = tiny_llama(tokenizer)
    texts = [f"The cat sat {{i}}." for i in range({N})]
    queries = [Query(ids=tokenizer.encode(t, add_special_tokens=False),
                     reward_ids=tokenizer.encode(t, add_special_tokens=False)) for t in texts]

    def paid_api(prompts, completions):
        with open(calls_path, "a", encoding="utf-8") as log:
            log.write("|".join(dict.fromkeys(prompts)) + "\\n")
            log.flush()
            os.fsync(log.fileno())
        time.sleep(delay)
        return [float(len(c)) for c in completions]

    labeler = ScorerLabeler(paid_api, name="paid", batch_size={LABEL_BATCH})
    collect_round(LabelStore(store_path), policy, tokenizer, queries, "sentiment", labeler, k=2, batch_size=8)
    print("round complete", flush=True)
    """
)


def run_round(store: Path, calls: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", ROUND, str(store), str(calls), str(delay)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def asked(calls: Path) -> list[list[str]]:
    return [line.split("|") for line in calls.read_text(encoding="utf-8").splitlines()] if calls.exists() else []


def paid_api(calls: Path, prompts, completions) -> list[float]:
    with calls.open("a", encoding="utf-8") as log:
        log.write("|".join(dict.fromkeys(prompts)) + "\n")
    return [float(len(c)) for c in completions]


def test_a_kill_mid_round_repeats_at_most_one_batch_of_labeler_calls(tmp_path, tiny_tokenizer):
    store_path, calls = tmp_path / "labels.sqlite", tmp_path / "calls.txt"
    first = run_round(store_path, calls, delay=1.0)
    deadline = time.monotonic() + 180
    while len(asked(calls)) < 3:  # killed while the third batch is being answered (two are committed)
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the labeler was never called"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    first.stdout.close()
    before_rerun = len(asked(calls))

    # The rerun (in this process): every comparison is stored, so it only labels what was not committed.
    store = LabelStore(store_path)
    assert len(store.comparisons()) == N  # comparisons are stored before anyone is asked
    labeler = ScorerLabeler(lambda prompts, completions: paid_api(calls, prompts, completions), name="paid",
                            batch_size=LABEL_BATCH)
    policy = tiny_llama(tiny_tokenizer)
    queries = [Query(ids=tiny_tokenizer.encode(f"The cat sat {i}.", add_special_tokens=False),
                     reward_ids=tiny_tokenizer.encode(f"The cat sat {i}.", add_special_tokens=False)) for i in range(N)]
    ids = collect_round(store, policy, tiny_tokenizer, queries, "sentiment", labeler, k=2, batch_size=8)
    assert ids == store.comparison_ids()

    batches = asked(calls)
    per_prompt = Counter(prompt for batch in batches for prompt in batch)
    assert all(len(batch) <= LABEL_BATCH for batch in batches)
    assert sum(per_prompt.values()) <= N + LABEL_BATCH  # at most the interrupted batch was asked twice
    assert len(per_prompt) == N and sum(per_prompt.values()) > N  # ...and the kill did land mid-batch
    repeated = [prompt for prompt, times in per_prompt.items() if times > 1]
    assert set(repeated) <= set(batches[before_rerun - 1])  # only the batch being answered at the kill

    answered = Counter(a.comparison_id for a in store.answers(include_retracted=True))
    assert sorted(answered) == store.comparison_ids() and set(answered.values()) == {1}
    store.close()
