"""The eval/ scripts end to end on tiny inputs: tables written, clear errors and exit code 2 on bad data."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from tests.conftest import tiny_config
from ziegler_trl.evaluation import lead3, rouge

EVAL = Path(__file__).parents[1] / "eval"
ARTICLES = [
    "(CNN)The mayor opened a bridge on Monday. It cost $5 million. Crowds cheered. Traffic resumed at noon.",
    "Scientists found a new frog. It is bright blue. It lives in Peru. More study is planned.",
    "A storm hit the coast. Power was lost. Schools closed. Repairs began on Friday.",
]
HIGHLIGHTS = ["Mayor opens $5 million bridge .", "New blue frog found in Peru .", "Storm closes schools ."]


def script(name):
    spec = importlib.util.spec_from_file_location(name, EVAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def cnndm(tmp_path):
    return write_jsonl(
        tmp_path / "cnndm.jsonl", [{"article": a, "highlights": h} for a, h in zip(ARTICLES, HIGHLIGHTS)]
    )



def test_summarization_table_lead3(cnndm, tmp_path):
    out = tmp_path / "t4.md"
    assert (
        script("summarization_table")(
            ["--task", "cnndm", "--dataset_name", str(cnndm), "--rows", "lead-3", "--out", str(out)]
        )
        == 0
    )
    expected = rouge([lead3(a.replace("(CNN)", "")) for a in ARTICLES], HIGHLIGHTS)
    row = next(line for line in out.read_text().splitlines() if line.startswith("| lead-3"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == [
        "lead-3",
        "3",
        f"{expected['rouge1']:.2f}",
        f"{expected['rouge2']:.2f}",
        f"{expected['rougeLsum']:.2f}",
    ]


def test_copying_table_with_plot(cnndm, tmp_path):
    out, plot = tmp_path / "copy.md", tmp_path / "novelty.png"
    argv = [
        "--task",
        "cnndm",
        "--dataset_name",
        str(cnndm),
        "--rows",
        "reference",
        "lead-3",
        "--out",
        str(out),
        "--plot",
        str(plot),
    ]
    assert script("copying_table")(argv) == 0
    text = out.read_text()
    assert "| lead-3 | 3 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 100.0 | 100.0 |" in text
    assert "| reference | 3 |" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["summarization_table", "copying_table"])
def test_bad_data_exits_with_a_clear_error(name, tmp_path, capsys):
    missing = write_jsonl(tmp_path / "bad.jsonl", [{"article": "A. B. C.", "summary": "x"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    main = script(name)
    out = str(tmp_path / "o.md")
    assert main(["--task", "cnndm", "--dataset_name", str(missing), "--rows", "lead-3", "--out", out]) == 2
    assert "bad.jsonl, line 1, field 'highlights': missing" in capsys.readouterr().err
    assert main(["--task", "cnndm", "--dataset_name", str(empty), "--rows", "lead-3", "--out", out]) == 2
    assert "empty.jsonl: no records" in capsys.readouterr().err


def test_model_row_then_saved_samples(tmp_path):
    from ziegler_trl.models import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    config = tiny_config(
        tokenizer, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=False
    )
    folder = tmp_path / "tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = write_jsonl(tmp_path / "tldr.jsonl", [{"post": a, "summary": h} for a, h in zip(ARTICLES, HIGHLIGHTS)])
    samples, out = tmp_path / "samples.jsonl", tmp_path / "t4.md"
    argv = [
        "--task",
        "tldr",
        "--dataset_name",
        str(data),
        "--rows",
        "lead-3",
        f"tiny={folder}",
        "--model-limit",
        "2",
        "--save-samples",
        str(samples),
        "--out",
        str(out),
    ]
    assert script("summarization_table")(argv) == 0
    assert "| tiny | 2 |" in out.read_text()
    saved = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [r["index"] for r in saved if r["row"] == "tiny"] == [0, 1]
    copy_out = tmp_path / "copy.md"
    argv = ["--task", "tldr", "--dataset_name", str(data), "--rows", f"tiny={samples}", "--out", str(copy_out)]
    assert script("copying_table")(argv) == 0
    assert "| tiny | 2 |" in copy_out.read_text()


def test_preference_agreement_and_frontier_scripts(tmp_path, capsys):
    judgments = []
    for item in range(4):
        for labeler in ("ann", "bob", "cid"):
            best = 0 if item < 3 or labeler == "cid" else 1
            judgments.append(
                {
                    "prompt": f"p{item}",
                    "completions": ["x", "y"],
                    "best": best,
                    "labeler": labeler,
                    "model_of_each_completion": ["ppo", "base"],
                }
            )
    records = write_jsonl(tmp_path / "labels.jsonl", judgments)
    out = tmp_path / "pref.md"
    assert script("preference_table")(["--records", str(records), "--out", str(out)]) == 0
    assert "| base vs ppo | 2way | 4 | 25.0 |" in out.read_text()
    assert script("preference_table")(["--records", str(records), "--pairs", "ppo", "--out", str(out)]) == 2
    assert "'ppo' is not A:B" in capsys.readouterr().err

    rows = [{"item_id": j["prompt"], "labeler": j["labeler"], "best": j["best"], "k": 2} for j in judgments]
    labels = write_jsonl(tmp_path / "agree.jsonl", rows)
    assert script("agreement_table")(["--labels", str(labels), "--reference", "ann", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| chance | 50.0 |" in text
    assert "| cid vs reference | 75.0 ± 25.0 | 4 | 4 |" in text

    rewards = write_jsonl(tmp_path / "rewards.jsonl", [{"reward": r} for r in [0.0] * 5 + [1.0] * 3 + [2.0] * 2])
    points = write_jsonl(tmp_path / "points.jsonl", [{"name": "ppo", "kl": 0.2, "reward": 1.1}])
    plot = tmp_path / "frontier.png"
    argv = ["--rewards", str(rewards), "--points", str(points), "--betas", "1", "--out", str(out), "--plot", str(plot)]
    assert script("kl_frontier")(argv) == 0
    assert "| 1.000 | 0.323 | 1.350 |" in out.read_text() and "| policy ppo | 0.200 | 1.100 |" in out.read_text()
    assert plot.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "none.jsonl").write_text("\n")
    assert script("kl_frontier")(["--rewards", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    assert "none.jsonl: no records" in capsys.readouterr().err


def test_the_cli_runs_a_table_and_reads_old_option_names(cnndm, tmp_path, caplog):
    """`ziegler-trl eval summarization` is the script; `--data` (its old name) still works, with a warning."""
    from ziegler_trl.cli import main

    out = tmp_path / "t4.md"
    with caplog.at_level("WARNING", logger="ziegler_trl.config_files"), pytest.raises(SystemExit) as done:
        main(["eval", "summarization", "--task", "cnndm", "--data", str(cnndm), "--rows", "lead-3", "--out", str(out)])
    assert done.value.code == 0
    assert "| lead-3 | 3 |" in out.read_text()
    assert [r.getMessage() for r in caplog.records] == [
        "option --data is deprecated, use --dataset_name (the old name is removed in the next release)"
    ]
