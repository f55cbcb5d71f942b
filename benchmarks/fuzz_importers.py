"""Fuzz every importer of user files: malformed input must end in our domain error (an `InputFileError` naming the
file), never in another exception, and a rejected label-store import must leave the store byte-identical.

Each importer in `IMPORTERS` (name -> seed files + a loader) gets `--cases` inputs made from its valid seed files
by seeded random mutations: byte flips, insertions, deletions, truncation, other encodings (UTF-16/32 with and
without a byte-order mark, Latin-1), raw line separators and NUL bytes, invalid UTF-8, and, on the parsed JSON,
type swaps, huge integers (past SQLite's 64 bits and past Python's 4,300-digit parsing limit), NaN and infinities,
deep nesting, lone surrogates, missing, extra and renamed fields. Prints per importer: cases / accepted / domain
errors / other exceptions / rejected imports that changed the store, with the first few other exceptions, and
exits 1 if there is any other exception or changed store.

    python benchmarks/fuzz_importers.py --cases 1000 --seed 0
    python benchmarks/fuzz_importers.py --cases 200 --only load_label_dataset

Register a new importer with `register(name, seeds, load, state=None)`: `seeds` are (file suffix, bytes) of files
the importer accepts, `load(path)` imports one file, and `state()` (optional) returns the bytes a rejected file
must leave unchanged.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl import ModelConfig

from ziegler_trl.config_files import load_config_file
from ziegler_trl.errors import InputFileError
from ziegler_trl.jsonl import jsonl_line
from ziegler_trl.labeling import Answer, LabelStore
from ziegler_trl.labeling.commands import import_labels
from ziegler_trl.ppo import ZieglerPPOConfig
from ziegler_trl.ppo.pipeline import RENAMED as POLICY_RENAMED
from ziegler_trl.ppo.pipeline import PolicyScriptArguments
from ziegler_trl.reward.labels import load_label_dataset, load_openai_labels
from ziegler_trl.tasks import load_task_texts


@dataclass
class Importer:
    name: str
    seeds: list[tuple[str, bytes]]
    load: Callable[[Path], object]
    state: Callable[[], bytes] | None = None
    tally: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


IMPORTERS: dict[str, Importer] = {}


def register(name: str, seeds: list[tuple[str, bytes]], load: Callable[[Path], object],
             state: Callable[[], bytes] | None = None) -> None:
    IMPORTERS[name] = Importer(name, seeds, load, state)


# -- seed files ----------------------------------------------------------------------------------------------------
WORDS = ["the", "cat", "sat", "on", "a", "mat", ".", "it", "was", "good", "bad", "day", "é", "✓", "story", "end"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `WORDS`, so lm-human-preferences seed files hold ids it can decode."""
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def jsonl(rows: list) -> bytes:
    return "".join(jsonl_line(r) for r in rows).encode()


def label_seeds(store_export: bytes) -> list[tuple[str, bytes]]:
    user = {"role": "user", "content": "tell a story é"}
    say = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    return [
        (".jsonl", jsonl([{"prompt": "the cat", "completions": ["sat .", "was good", "✓ end"], "best": 1},
                          {"prompt": "a day", "completions": ["it was", "bad", "good"], "best": 0}])),
        (".jsonl", jsonl([{"prompt": "the cat", "completions": ["sat", "was"], "best": 1, "ranking": [1, 0]}])),
        (".jsonl", store_export),
        (".jsonl", jsonl([{"prompt": "the sky is", "chosen": " blue .", "rejected": " green ."}])),
        (".jsonl", jsonl([{"chosen": "Q: sky? A: blue", "rejected": "Q: sky? A: green"}])),
        (".jsonl", jsonl([{"chosen": [user, say("once")], "rejected": [user, say("never")]},
                          {"prompt": [user], "chosen": [say("yes")], "rejected": [say("no")]}])),
        (".jsonl", jsonl([{"prompt": [user], "completions": [[say("a")], [say("b")]], "best": 0},
                          {"prompt": [user, say("hm"), user], "completions": [[say("c")], [say("d")]], "best": 1}])),
    ]


def openai_seeds() -> list[tuple[str, bytes]]:
    samples = {"sample0": [5, 6, 7], "sample1": [8, 9, 50259, 50259], "sample2": [14, 15], "sample3": [16, 17]}
    records = [{"query": [2, 3, 4, 50259], **samples, "best": best} for best in (0, 3)]
    return [(".json", json.dumps(records).encode()), (".jsonl", jsonl(records))]


def build_registry(workdir: Path) -> None:
    tokenizer = word_tokenizer()
    source = LabelStore(workdir / "source.db")
    ids = source.add_comparisons(["the cat é", "a day\u2028"], [["sat", "was good", "end"], ["it", "bad"]],
                                 task="sentiment", round=0, policy="rho")
    source.add_answers([Answer(ids[0], "ann", 1, ranking=[1, 0, 2], shown_order=[2, 0, 1], shown_at=1.0),
                        Answer(ids[0], "bob", 2), Answer(ids[1], "ann", skipped=True)])
    export = source.export_jsonl().encode()
    unanswered = jsonl([{"prompt": "my own", "completions": ["one", "two"], "task": "tldr", "round": 2}])
    rows = jsonl([{"prompt": "p", "completions": ["x", "y"], "best": 0, "labeler": "z"}])

    register("load_openai_labels", openai_seeds(), lambda p: load_openai_labels(str(p), tokenizer=tokenizer))
    register("load_label_dataset", label_seeds(export) + openai_seeds(),
             lambda p: load_label_dataset(str(p), tokenizer=tokenizer))
    for name, importer in (("LabelStore.import_jsonl", lambda db, p: LabelStore(db).import_jsonl(p)),
                           ("label import", lambda db, p: import_labels(db, p))):
        db = workdir / f"{name.replace(' ', '_')}.db"
        LabelStore(db).close()  # the schema exists before the first snapshot
        register(name, [(".jsonl", export), (".jsonl", unanswered), (".jsonl", rows)],
                 lambda p, db=db, importer=importer: importer(db, p),
                 state=lambda db=db: b"".join(f.read_bytes() for f in (db, Path(f"{db}-wal")) if f.exists()))
    texts = {"sentiment": [{"text": "The cat sat. It was good é."}, {"text": "A day\u2028of rain."}],
             "cnndm": [{"article": "(CNN) The market fell.\nStocks dropped.", "highlights": "Stocks fell."}],
             "tldr": [{"post": "I lost my keys today.", "summary": "lost keys"}]}
    for task, seed_rows in texts.items():
        register(f"load_task_texts[{task}]", [(".jsonl", jsonl(seed_rows))],
                 lambda p, task=task: load_task_texts(task, str(p)))
    # `--config` files of `ziegler-trl train-policy`: JSON-shaped YAML, so the structural mutations apply.
    policy_options = (PolicyScriptArguments, ZieglerPPOConfig, ModelConfig)
    config = {"task": "sentiment", "dataset_name": "builtin", "reward_scorer": "vader", "total_episodes": 64,
              "learning_rate": 0.00003, "kl_control": "adaptive", "kl_target": 6.0, "use_cpu": True}
    register("load_config_file", [(".yaml", jsonl([config]))],
             lambda p: load_config_file(p, policy_options, renamed=POLICY_RENAMED))


# -- mutations -----------------------------------------------------------------------------------------------------
DEEP, HUGE_INT, BIG_FLOAT = "\x00deep\x00", "\x00hugeint\x00", "\x00bigfloat\x00"  # replaced after json.dumps
ODD_VALUES: list = [
    None, True, False, 0, -1, 1.5, 2**63, 2**64, -(2**63) - 1, 10**30, float("nan"), float("inf"), float("-inf"),
    "", "yesterday", "\ud800", "a\udc80b", "\u2028", "x" * 100_000, [], {}, [1, 2], [0, 0], {"a": 1}, [[[[1]]]],
    list(range(1000)), DEEP, HUGE_INT, BIG_FLOAT,
]
NEAR_MISS_KEYS = ["Best", "bset", "prompts", "completion", "answer", "id", "k", "created_at", "sample4", ""]


def odd_value(rng: random.Random) -> object:
    return copy.deepcopy(rng.choice(ODD_VALUES))  # a copy: later mutations must not edit the pool


def nodes(value: object) -> list[tuple]:
    """Every (container, key) pair in a parsed JSON value, for picking one to mutate."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((value, key))
            found.extend(nodes(item))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index))
            found.extend(nodes(item))
    return found


def mutate_structure(records: list, rng: random.Random) -> None:
    targets = nodes(records)
    if not targets:
        records.append(odd_value(rng))
        return
    container, key = rng.choice(targets)
    action = rng.randrange(8)
    if action <= 2:
        container[key] = odd_value(rng)
    elif action == 3 and isinstance(container, dict):
        del container[key]
    elif action == 4 and isinstance(container, dict):
        container[rng.choice(NEAR_MISS_KEYS)] = container.pop(key)
    elif action == 5 and isinstance(container, dict):
        container[rng.choice(NEAR_MISS_KEYS + ["extra"])] = odd_value(rng)
    elif action == 6:
        container[key] = [container[key]] if rng.random() < 0.5 else {"v": container[key]}
    else:
        other_container, other_key = rng.choice(targets)
        container[key], other_container[other_key] = other_container[other_key], container[key]


def serialize(records: list, as_array: bool, rng: random.Random) -> bytes:
    # Raw json.dumps on purpose: True writes surrogates as \\ud800 escapes, False as raw (invalid) UTF-8.
    ascii_only = rng.random() < 0.5
    if as_array:
        text = json.dumps(records, ensure_ascii=ascii_only)
    else:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)
    depth = rng.choice([70, 2000, 100_000])
    text = (text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
            .replace(json.dumps(HUGE_INT), "9" * rng.choice([4301, 5000, 20_000]))
            .replace(json.dumps(BIG_FLOAT), rng.choice(["1e999", "-1e999", "1" * 400 + ".0"])))
    return text.encode("utf-8", errors="surrogatepass")


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    n = max(len(data), 1)
    at = rng.randrange(n)
    action = rng.randrange(12)
    if action == 0:  # flip bytes
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if out:
                out[rng.randrange(len(out))] ^= rng.randint(1, 255)
        return bytes(out)
    if action == 1:
        return data[:at]
    if action == 2:
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]
    if action == 3:
        return data[:at] + data[at + rng.randint(1, 64):]
    if action == 4:
        return data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xe2\x80\xa8", b"\xc2\x85",
                                       b"\r", b"\x0b", b"\x1c"]) + data[at:]
    if action == 5:
        return data.replace(b"\n", rng.choice([b"\r", b"\r\n", b"\xe2\x80\xa8", b"\n\n\n"]))
    if action == 6:
        text = data.decode("utf-8", errors="surrogateescape")  # stray bytes become lone surrogates
        encoding = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
        return text.encode(encoding, errors="surrogatepass")
    if action == 7:
        return data.decode("utf-8", errors="replace").encode("latin-1", errors="replace")
    if action == 8:
        return rng.choice([b"", b"   \n\n", b"\n", b"null\n", b"[]", b"{}", b"[[]]", b"\xef\xbb\xbf"])
    if action == 9:
        return data + data[: rng.randrange(n)]
    if action == 10:
        return data[at:] + data[:at]
    return data * rng.randint(2, 3)


def make_case(seeds: list[tuple[str, bytes]], rng: random.Random) -> tuple[str, bytes, str]:
    suffix, data = rng.choice(seeds)
    steps = []
    if rng.random() < 0.6:  # structural mutations on the parsed JSON, then maybe bytes on top
        text = data.decode("utf-8")
        as_array = text.lstrip().startswith("[")
        records = json.loads(text) if as_array else [json.loads(line) for line in text.split("\n") if line.strip()]
        for _ in range(rng.randint(1, 3)):
            mutate_structure(records, rng)
            steps.append("structure")
        data = serialize(records, as_array, rng)
    for _ in range(rng.randint(0 if steps else 1, 2)):
        data = mutate_bytes(data, rng)
        steps.append("bytes")
    return suffix, data, "+".join(steps)


# -- running -------------------------------------------------------------------------------------------------------
def run_case(importer: Importer, path: Path, description: str) -> None:
    before = importer.state() if importer.state else None
    try:
        importer.load(path)
    except InputFileError as err:
        if not str(err).startswith(str(path)):
            importer.tally["other"] += 1
            importer.failures.append(f"{description}: domain error not naming the file: {err}")
            return
        importer.tally["domain"] += 1
        if before is not None and importer.state() != before:
            importer.tally["store changed"] += 1
            importer.failures.append(f"{description}: rejected, yet the store changed: {err}")
    except Exception as err:  # noqa: BLE001 - counting what escapes is the point
        importer.tally["other"] += 1
        importer.failures.append(f"{description}: {type(err).__name__}: {str(err)[:200]}")
    else:
        importer.tally["accepted"] += 1


def fuzz(cases: int, seed: int, only: list[str] | None = None, workdir: Path | None = None) -> dict[str, Counter]:
    """Run `cases` malformed inputs through each importer; returns each importer's tally."""
    quiet = logging.getLogger("ziegler_trl.reward.labels")  # "left out N comparisons" is no news here
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _fuzz(cases, seed, only, workdir)
    finally:
        quiet.setLevel(level)


def _fuzz(cases: int, seed: int, only: list[str] | None, workdir: Path | None) -> dict[str, Counter]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        IMPORTERS.clear()
        build_registry(folder)
        for name, importer in IMPORTERS.items():
            if only and name not in only:
                continue
            for index, (suffix, data) in enumerate(importer.seeds):  # the fuzzer is wrong if a seed is refused
                path = folder / f"seed{index}{suffix}"
                path.write_bytes(data)
                importer.load(path)
            rng = random.Random(f"{seed}:{name}")
            for case in range(cases):
                suffix, data, steps = make_case(importer.seeds, rng)
                path = folder / f"case{suffix}"
                path.write_bytes(data)
                importer.tally["cases"] += 1
                run_case(importer, path, f"case {case} ({steps})")
        return {name: importer.tally for name, importer in IMPORTERS.items() if importer.tally}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="malformed inputs per importer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="importer names (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    tallies = fuzz(args.cases, args.seed, args.only)
    print(f"{'importer':<28} {'cases':>6} {'accepted':>8} {'domain errors':>13} {'other exceptions':>16} "
          f"{'store changed':>13}")
    for name, tally in tallies.items():
        print(f"{name:<28} {tally['cases']:>6} {tally['accepted']:>8} {tally['domain']:>13} {tally['other']:>16} "
              f"{tally['store changed']:>13}")
    for name, importer in IMPORTERS.items():
        for failure in importer.failures[:5]:
            print(f"  {name}: {failure}")
    print(f"{sum(t['cases'] for t in tallies.values())} cases in {time.perf_counter() - start:.1f} s "
          f"(seed {args.seed})")
    bad = sum(t["other"] + t["store changed"] for t in tallies.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
