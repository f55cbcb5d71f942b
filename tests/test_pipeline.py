import json

import pytest

from ziegler_trl import UserInputError
from ziegler_trl.labeling import LabelStore
from ziegler_trl.pipeline import PipelineConfig, WaitingForLabels, run_pipeline

TEXT = "It was late. She smiled at the happy dog and laughed. The rain fell all night and the road was wet."


@pytest.fixture
def queries(tmp_path):
    path = tmp_path / "books.jsonl"
    path.write_text("\n".join(json.dumps({"text": TEXT.replace("dog", f"dog {i}")}) for i in range(8)))
    return str(path)


def config(tmp_path, tiny_model_dir, queries, **overrides):
    base = dict(output_dir=str(tmp_path / "loop"), model_name_or_path=str(tiny_model_dir), task="sentiment",
                dataset_name=queries,
                comparisons_per_round=8, reward_batch_size=4, total_episodes_per_round=8, policy_batch_size=8,
                init_kl_coef=0.2, kl_target=6.0)
    base.update(overrides)
    return PipelineConfig(**base)


@pytest.mark.slow
def test_batched_rounds_carry_beta_and_resume(tmp_path, tiny_model_dir, queries):
    cfg = config(tmp_path, tiny_model_dir, queries, mode="batched", rounds=2)
    final = run_pipeline(cfg)
    root = tmp_path / "loop"
    assert final == root / "policy_round1" and (final / "config.json").is_file()
    store = LabelStore(root / "labels.sqlite")
    assert len(store.comparison_ids(round=0)) == len(store.comparison_ids(round=1)) == 8
    assert {c.policy for c in store.comparisons()} == {"round0", "round1"}
    assert len(store.answers()) == 16
    store.close()
    metrics = json.loads((root / "reward_round1" / "reward_metrics.json").read_text())
    assert metrics["num_train"] + metrics["num_eval"] == 16  # round 1's reward model saw every label so far
    logs = [json.loads((root / f"policy_round{r}" / "ppo_log.json").read_text()) for r in (0, 1)]
    betas = [[e["objective/kl_coef"] for e in log if "objective/kl_coef" in e] for log in logs]
    assert betas[0][0] == 0.2 and betas[1][0] == betas[0][-1]  # β carries over between rounds

    stages = json.loads((root / "stages.json").read_text())
    run_pipeline(cfg)  # a rerun resumes: nothing is redone
    assert json.loads((root / "stages.json").read_text()) == stages


def test_human_round_waits_for_people(tmp_path, tiny_model_dir, queries):
    cfg = config(tmp_path, tiny_model_dir, queries, labeler="human")
    store = LabelStore(tmp_path / "loop" / "labels.sqlite")
    store.add_labeler("alice")
    store.close()
    with pytest.raises(WaitingForLabels, match=r"round 0: 0/8 comparisons answered"):
        run_pipeline(cfg)
    store = LabelStore(tmp_path / "loop" / "labels.sqlite")
    assert len(store.comparison_ids(round=0)) == 8 and len(store.assignments()) == 8
    store.close()


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="--mode must be"):
        PipelineConfig(dataset_name="x.jsonl", mode="online")
    with pytest.raises(UserInputError, match="--dataset_name is required"):
        PipelineConfig()
