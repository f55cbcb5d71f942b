import pytest
import torch

from tests.conftest import SHARED_DATA
from ziegler_trl.sft import (
    SFTScriptArguments,
    ZieglerSFTConfig,
    demonstrations,
    train_sft,
)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data samples not present")
def test_demonstrations_use_the_task_format(tiny_tokenizer):
    rows = demonstrations("tldr", str(SHARED_DATA / "tldr_sample.jsonl"), tiny_tokenizer, limit=5)
    assert len(rows) == 5
    assert all(p.endswith("\n\nTL;DR:") for p in rows["prompt"])
    assert all(c.startswith(" ") and c.endswith("\n") and "\n" not in c[:-1] for c in rows["completion"])
    with pytest.raises(ValueError, match="no reference texts"):
        demonstrations("sentiment", str(SHARED_DATA / "books_sample.jsonl"), tiny_tokenizer)


def test_sft_trains_and_saves_a_causal_lm(tmp_path, tiny_model_dir, tiny_tokenizer):
    import json

    from ziegler_trl import load_policy

    data = tmp_path / "tldr.jsonl"
    post = {"id": "t3_x", "subreddit": "pets", "title": "dog", "post": "The happy dog ran in the park all day.",
            "summary": "dog ran"}
    data.write_text("\n".join(json.dumps(post) for _ in range(4)))
    args = ZieglerSFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2,
                            report_to="none", save_strategy="steps", save_steps=2,
                            logging_steps=1, max_length=640, dataloader_pin_memory=False)
    assert args.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())  # TRL's default: True
    script = SFTScriptArguments(model_name_or_path=str(tiny_model_dir), task="tldr",
                                dataset_name=str(data), limit=4)
    trainer = train_sft(script, args)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert load_policy(str(tmp_path / "sft")).config.vocab_size == len(tiny_tokenizer)
    # checkpoints are published whole (staged, then renamed into place)
    assert (tmp_path / "sft" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "sft" / "_incomplete").exists()
