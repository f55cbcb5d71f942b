"""One's own comparisons in, people's labels out, a reward model trained on them: every file a command writes is
one another command reads."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import urllib.request

from ziegler_trl import BestOfKRewardConfig, BestOfKRewardTrainer, load_label_dataset
from ziegler_trl.labeling import LabelStore
from ziegler_trl.labeling.app import BackgroundServer
from ziegler_trl.labeling.commands import add_labeler, assign, export, import_labels, register


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="ziegler-trl")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = args.func(args)
    return code, out.getvalue()


def test_enqueue_label_download_and_train(tmp_path, tiny_model_dir, tiny_tokenizer):
    queue = tmp_path / "mine.jsonl"
    queue.write_text("".join(
        json.dumps({"prompt": f"The cat sat {i}.", "completions": [" It was good.", " It was bad.", " Fine."],
                    "task": "sentiment", "round": 0, "policy": "my-model"}) + "\n"
        for i in range(8)
    ))
    db = tmp_path / "store.db"
    code, out = _cli(["label", "import", "--store", str(db), str(queue)])
    assert code == 0
    assert f"8 new comparisons and 0 new answers imported from {queue}" in out
    assert f"ziegler-trl label assign --store {db}" in out
    assert import_labels(db, queue) == 0 and LabelStore(db).counts()["comparisons"] == 8  # idempotent
    add_labeler(db, "ann")
    add_labeler(db, "bob")
    assert assign(db, overlap=0.25, repeats=2, seed=0) == 10
    store = LabelStore(db)
    for cid, name in store.assignments():  # what the web app records for each answer
        store.add_answer(cid, name, 0 if name == "ann" or cid % 3 else 1, shown_order=[2, 0, 1], shown_at=1.5,
                         require_assignment=True)
    with BackgroundServer(store) as url:
        with urllib.request.urlopen(f"{url}/admin/{store.admin_token}/export.jsonl", timeout=10) as response:
            downloaded = response.read()
    (tmp_path / "download.jsonl").write_bytes(downloaded)
    assert export(db, tmp_path / "export.jsonl") == 8
    assert (tmp_path / "export.jsonl").read_bytes() == downloaded  # the admin download is `label export`
    rows = load_label_dataset(str(tmp_path / "download.jsonl"))
    assert rows[:] == store.to_dataset()[:] and len(rows) == 8
    args = BestOfKRewardConfig(output_dir=str(tmp_path / "rm"), per_device_train_batch_size=4, max_steps=2,
                               report_to="none", save_strategy="no", logging_steps=1, seed=0,
                               dataloader_pin_memory=False)
    trainer = BestOfKRewardTrainer(str(tiny_model_dir), args=args, train_dataset=rows, processing_class=tiny_tokenizer)
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0
    # and the downloaded export imports into another store unchanged
    assert import_labels(tmp_path / "copy.db", tmp_path / "download.jsonl") == 10
    assert LabelStore(tmp_path / "copy.db").export_jsonl().encode() == downloaded
