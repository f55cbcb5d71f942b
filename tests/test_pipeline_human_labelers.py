"""`collect --labeler human` with nobody to label stops before sampling and says what to run next."""

from __future__ import annotations

import json

import pytest

from ziegler_trl.errors import UserInputError
from ziegler_trl.labeling import LabelStore
from ziegler_trl.pipeline import PipelineConfig, run_pipeline


def test_human_labeling_without_labelers_stops_before_sampling(tmp_path):
    queries = tmp_path / "texts.jsonl"
    queries.write_text(json.dumps({"text": "It was a fine day."}) + "\n")
    # A model path that does not exist: loading it (or sampling) would fail with another error than ours.
    cfg = PipelineConfig(output_dir=str(tmp_path / "loop"), model_name_or_path=str(tmp_path / "no-model"),
                         dataset_name=str(queries),
                         labeler="human", comparisons_per_round=4)
    store_path = tmp_path / "loop" / "labels.sqlite"
    with pytest.raises(UserInputError) as caught:
        run_pipeline(cfg)
    message = str(caught.value)
    assert "no labeler is registered" in message and "\n" not in message
    assert f"ziegler-trl label add-labeler --store {store_path} NAME" in message
    assert f"ziegler-trl label serve --store {store_path}" in message
    store = LabelStore(store_path)
    assert store.counts()["comparisons"] == 0  # nothing was sampled

    store.add_labeler("ann")
    store.revoke_labeler("ann")
    with pytest.raises(UserInputError, match="every labeler's link was revoked"):
        run_pipeline(cfg)
    assert not (tmp_path / "loop" / "stages.json").exists()  # no stage was recorded as done
