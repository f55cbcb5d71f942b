"""A user's mistake ends `ziegler-trl` with one line on stderr naming what was wrong, status 2, no traceback.

Each command runs in a subprocess, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


# Runs `ziegler_trl.cli.main` once per argv in ONE interpreter (torch is imported once), like a user's shell would
# run the commands: each run's exit status and stderr, or the traceback of an exception that escaped main.
HARNESS = """
import contextlib, io, json, os, sys, traceback
from ziegler_trl.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            code, _ = None, traceback.print_exc(file=err)
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_cli(argvs: list[list[str]], cwd: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", HARNESS, json.dumps(argvs)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_one_line_error(result: dict, expected: str, case: str) -> None:
    context = f"{case}: {result['stderr'][-3000:]}"
    assert result["code"] == 2, context
    assert "Traceback" not in result["stderr"], context
    lines = [line for line in result["stderr"].splitlines() if line.startswith("ziegler-trl")]
    assert len(lines) == 1, context
    assert expected in lines[0], context


CASES = {
    "unknown config key": (
        ["collect", "--config", "cfg.yaml"], "ziegler-trl collect: error: cfg.yaml, line 2, field 'rouds': "
        "unknown option; did you mean 'rounds'?",
    ),
    "collect PPO batch below the whitening minimum": (
        ["collect", "--dataset_name", "builtin", "--ppo_batch_size", "4"],
        "ziegler-trl collect: error: --policy_batch_size must be at least 8: PPO whitens the rewards",
    ),
    "quickstart PPO batch below the whitening minimum": (
        ["quickstart", "--ppo_batch_size", "4", "--output_dir", "qs"],
        "ziegler-trl quickstart: error: --policy_batch_size must be at least 8",
    ),
    "bad collect mode": (
        ["collect", "--dataset_name", "builtin", "--mode", "online"],
        "ziegler-trl collect: error: --mode must be 'offline' or 'batched', got 'online'",
    ),
    "missing data file": (
        ["collect", "--dataset_name", "missing.jsonl", "--output_dir", "loop"],
        "ziegler-trl collect: error: --dataset_name 'missing.jsonl': no such file",
    ),
    "unknown task": (
        ["collect", "--dataset_name", "builtin", "--task", "poetry", "--output_dir", "loop"],
        "ziegler-trl collect: error: Unknown task 'poetry'; choose one of ['cnndm', 'descriptiveness', 'sentiment', "
        "'tldr']",
    ),
    "no labelers": (
        ["label", "assign", "--store", "labels.sqlite"],
        "ziegler-trl label assign: error: no labelers registered in labels.sqlite",
    ),
    "no store at the path": (
        ["label", "status", "--store", "no/such/labels.sqlite"],
        "ziegler-trl label status: error: argument --store: no label store at no/such/labels.sqlite: "
        "`ziegler-trl label add-labeler` or `ziegler-trl label import` creates one",
    ),
    "missing label file to import": (
        ["label", "import", "--store", "labels.sqlite", "answers.jsonl"],
        "ziegler-trl label import: error: input file 'answers.jsonl': no such file",
    ),
    "missing eval data": (
        ["eval", "summarization", "--task", "cnndm", "--dataset_name", "gone.jsonl", "--rows", "lead-3",
         "--out", "t.md"],
        "ziegler-trl eval summarization: error: --dataset_name 'gone.jsonl': no such file",
    ),
    "bad preference pair": (
        ["eval", "preference", "--records", "records.jsonl", "--pairs", "ppo", "--out", "t.md"],
        "ziegler-trl eval preference: error: --pairs entry 'ppo' is not A:B",
    ),
}


def test_each_mistake_is_one_line_and_status_2(tmp_path, tiny_model_dir):
    from ziegler_trl.quickstart import QuickstartConfig

    article = "The mayor opened a bridge on Monday. It cost $5 million. Crowds cheered. Traffic resumed at noon."
    (tmp_path / "news.jsonl").write_text(json.dumps({"article": article, "highlights": "Bridge opens ."}) + "\n")
    text = "It was late. She smiled at the happy dog and laughed. The rain fell all night and the road was wet."
    (tmp_path / "books.jsonl").write_text(json.dumps({"text": text}) + "\n")

    (tmp_path / "cfg.yaml").write_text("task: sentiment\nrouds: 2\n")
    (tmp_path / "rm.yaml").write_text("learning_rate: 1e-5\nper_device_train_batch_size: four\n")
    record = {"prompt": "p", "completions": ["a", "b"], "best": 0, "labeler": "ann",
              "model_of_each_completion": ["x", "y"]}
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    from ziegler_trl.labeling import LabelStore

    LabelStore(tmp_path / "labels.sqlite").close()  # a store with no labeler yet
    # a quickstart folder saved before the `model` option was renamed, resumed with another seed
    run = tmp_path / "qs"
    run.mkdir()
    saved = {**QuickstartConfig().__dict__, "output_dir": str(run)}
    saved["model"] = saved.pop("model_name_or_path")
    (run / "config.json").write_text(json.dumps(saved))
    (run / "stages.json").write_text("{}")
    cases = {
        **CASES,
        "both reward sources": (
            ["train-policy", "--reward_scorer", "vader", "--reward_model", "rm", "--output_dir", "out"],
            "ziegler-trl train-policy: error: set exactly one of --reward_model and --reward_scorer",
        ),
        "missing label file": (
            ["train-reward", "--dataset_name", "labels.jsonl", "--output_dir", "rm"],
            "ziegler-trl train-reward: error: --dataset_name 'labels.jsonl': no such file",
        ),
        "bad value type": (
            ["train-reward", "--config", "rm.yaml"],
            "ziegler-trl train-reward: error: rm.yaml, line 2, field 'per_device_train_batch_size': must be an "
            "integer (got 'four')",
        ),
        "missing model folder": (
            ["eval", "summarization", "--task", "cnndm", "--dataset_name", "news.jsonl", "--rows", "mine=runs/nope",
             "--out", "t.md"],
            "ziegler-trl eval summarization: error: model 'runs/nope' (no such local folder, and not a Hub model "
            "here): ",
        ),
        "missing reward model folder": (
            ["eval", "kl-frontier", "--task", "sentiment", "--dataset_name", "books.jsonl", "--reward_model",
             "runs/rm", "--model_name_or_path", str(tiny_model_dir), "--out", "f.md"],
            "ziegler-trl eval kl-frontier: error: model 'runs/rm' (no such local folder, and not a Hub model here): ",
        ),
        "changed quickstart setting": (
            ["quickstart", "--output_dir", str(run), "--seed", "1"],
            f"ziegler-trl quickstart: error: {run} holds a run made with other settings (seed: 0 → 1): rerun with "
            "the same settings to resume it",
        ),
    }
    results = run_cli([argv for argv, _ in cases.values()], tmp_path)
    for (case, (_, expected)), result in zip(cases.items(), results):
        assert_one_line_error(result, expected, case)


def test_a_recipe_script_reports_a_mistake_in_one_line(tmp_path):
    """`python recipes/train_policy.py` (what `accelerate launch` runs on every rank) reports like `ziegler-trl`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "train_policy.py"), "--dataset_name", "builtin", "--task", "sentiment",
         "--output_dir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert ("recipes/train_policy.py: error: set exactly one of --reward_model and --reward_scorer"
            in done.stderr.splitlines()[-1]), done.stderr[-3000:]
