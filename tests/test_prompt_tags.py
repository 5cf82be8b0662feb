"""RECAP for stock VLAs through the prompt: tagged datasets, the inference step, tagged checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import lerobot_eval_episode, read_frames, run_cli, tree_hashes
from lerobot.lerobot_types import TransitionKey
from lerobot.processor import (
    DataProcessorPipeline,
    NewLineTaskProcessorStep,
    ProcessorStepRegistry,
    TokenizerProcessorStep,
)
from lerobot.processor.converters import create_transition
from synthetic import STATE, make_dataset

from lerobot_policy_pi_star_recap.data.columns import read_recap_columns
from lerobot_policy_pi_star_recap.data.writing import DatasetToolError
from lerobot_policy_pi_star_recap.model.backbone import tiny_tokenizer
from lerobot_policy_pi_star_recap.stock_vlas.prompt_tags import (
    PROMPT_STEP,
    AdvantagePromptStep,
    check_template,
    tag_checkpoint,
    tag_pattern,
    tagged,
)

TASK = "push the block"
TYPES = ["demo", "auto", "intervention", "auto"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A RECAP dataset with an advantage_indicator column, as value-label writes it."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    root = tmp_path_factory.mktemp("labelled")
    source = LeRobotDataset("local/synthetic", root=make_dataset(root / "src", TYPES, length=12))
    indicator = (np.arange(source.meta.total_frames) % 3 == 0).astype(np.float32)[:, None]
    feature = {"dtype": "float32", "shape": (1,), "names": None}
    add_features(
        source, {"advantage_indicator": (indicator, feature)}, output_dir=root / "data", repo_id="local/x"
    )
    return root / "data"


def test_templates_need_both_placeholders_once():
    check_template("{task}\nAdvantage: {label}")
    for bad in ("Advantage: {label}", "{task} {task} {label}", "{task} {label} {other}"):
        with pytest.raises(DatasetToolError):
            check_template(bad)
    pattern = tag_pattern()
    assert pattern.match(tagged(TASK, "positive")) and pattern.match(tagged("a\nb", "negative"))
    assert not pattern.match(TASK) and not pattern.match(f"{TASK}\nAdvantage: maybe")


def test_tagged_dataset_loads_with_stock_lerobot_and_keeps_the_original_task(labelled, tmp_path):
    from lerobot.datasets import LeRobotDataset

    before = tree_hashes(labelled)
    out = tmp_path / "tagged"
    assert run_cli("tag-prompts", "--input", labelled, "--output", out, "--untagged-fraction", "0.25") == 0
    assert tree_hashes(labelled) == before  # the source is only read
    frames = read_frames(out)
    source = read_frames(labelled)
    columns = read_recap_columns(labelled)
    dataset = LeRobotDataset("local/tagged", root=out)
    untagged, expected_positive = 0, 0
    for i in range(len(dataset)):
        task = dataset[i]["task"]
        positive = source["advantage_indicator"][i] > 0.5 or columns.intervention[i] > 0.5
        if task == TASK:
            untagged += 1
        else:
            assert task == tagged(TASK, "positive" if positive else "negative"), i
            expected_positive += positive
    assert 0.1 < untagged / len(dataset) < 0.4
    assert (frames["base_task_index"] == source["task_index"]).all()
    assert (read_recap_columns(out).task_index == columns.task_index).all()  # per-task thresholds unchanged
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["total_tasks"] == 3 and "base_task_index" in info["features"]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert stats["task_index"]["max"] == [2.0]
    # the same seed gives the same untagged frames; all tagged with 0
    again = tmp_path / "again"
    assert run_cli("tag-prompts", "--input", labelled, "--output", again, "--untagged-fraction", "0.25") == 0
    assert (read_frames(again)["task_index"] == frames["task_index"]).all()
    none_left = tmp_path / "all"
    assert run_cli("tag-prompts", "--input", labelled, "--output", none_left, "--untagged-fraction", "0") == 0
    assert (read_frames(none_left)["task_index"] > 0).all()


def test_tag_prompts_bad_input_is_one_clear_error(labelled, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        (["--template", "Advantage: {label}"], "{task} exactly once"),
        (["--untagged-fraction", "1.5"], "must lie in [0, 1]"),
    ]
    for extra, message in cases:
        assert run_cli("tag-prompts", "--input", labelled, "--output", out, *extra) == 2
        assert message in capsys.readouterr().err and not out.exists()
    unlabelled = make_dataset(tmp_path / "plain", ["demo"], length=6)
    assert run_cli("tag-prompts", "--input", unlabelled, "--output", out) == 2
    assert "value-label" in capsys.readouterr().err
    assert run_cli("tag-prompts", "--input", labelled, "--output", tmp_path / "t") == 0
    assert run_cli("tag-prompts", "--input", tmp_path / "t", "--output", out) == 2
    assert "already carry an advantage tag" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".*tmp-*"))  # no staging folder left behind


def _pipeline(steps) -> DataProcessorPipeline:
    return DataProcessorPipeline(steps=steps, to_transition=lambda x: x, to_output=lambda x: x)


def _tokens(pipeline: DataProcessorPipeline, task: str, state: torch.Tensor | None = None) -> torch.Tensor:
    observation = {STATE: state} if state is not None else {}
    out = pipeline(create_transition(observation=observation, complementary_data={"task": [task]}))
    return out[TransitionKey.OBSERVATION]["observation.language.tokens"]


@pytest.mark.parametrize("policy", ["smolvla", "pi05"])
def test_the_prompt_tokenised_at_eval_equals_the_positive_training_prompt(policy, tmp_path):
    """Training sees the tagged task from the dataset; evaluation sees the plain task plus the step that
    tag_checkpoint inserts. Both must reach the tokenizer as the same token ids, through each policy's own
    task steps (SmolVLA / pi0 append a newline; pi05 folds newlines into "Task: ..., State: ...;")."""
    from lerobot.policies.pi05.processor_pi05 import Pi05PrepareStateTokenizerProcessorStep

    tokenizer = TokenizerProcessorStep(tokenizer=tiny_tokenizer(), max_length=120, padding="max_length")
    task_step = Pi05PrepareStateTokenizerProcessorStep() if policy == "pi05" else NewLineTaskProcessorStep()
    state = torch.zeros(1, 4) if policy == "pi05" else None
    training = _pipeline([task_step, tokenizer])
    evaluation = _pipeline([AdvantagePromptStep(), task_step, tokenizer])
    positive = _tokens(training, tagged(TASK, "positive"), state)
    assert torch.equal(_tokens(evaluation, TASK, state), positive)
    assert not torch.equal(_tokens(training, tagged(TASK, "negative"), state), positive)
    assert torch.equal(
        _tokens(evaluation, tagged(TASK, "negative"), state),
        _tokens(training, tagged(TASK, "negative"), state),
    )
    decoded = tiny_tokenizer().decode(positive[0], skip_special_tokens=True)
    assert "Advantage: positive" in decoded  # the tag survives the policy's own rewriting


def test_tag_checkpoint_inserts_the_step_before_the_first_task_step(tmp_path, capsys):
    steps = [
        {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
        {"registry_name": "to_batch_processor", "config": {}},
        {"registry_name": "smolvla_new_line_processor", "config": {}},
        {"registry_name": "tokenizer_processor", "config": {"max_length": 48}},
    ]
    source = tmp_path / "ckpt"
    source.mkdir()
    (source / "policy_preprocessor.json").write_text(
        json.dumps({"name": "policy_preprocessor", "steps": steps})
    )
    (source / "config.json").write_text("{}")
    out = tmp_path / "positive"
    assert run_cli("tag-checkpoint", "--input", source, "--output", out) == 0
    written = json.loads((out / "policy_preprocessor.json").read_text())["steps"]
    assert [s["registry_name"] for s in written] == [
        "rename_observations_processor",
        "to_batch_processor",
        PROMPT_STEP,
        "smolvla_new_line_processor",
        "tokenizer_processor",
    ]
    step = ProcessorStepRegistry.get(PROMPT_STEP)(**written[2]["config"])
    assert step.complementary_data({"task": TASK})["task"] == tagged(TASK, "positive")
    assert (out / "config.json").is_file()
    # already tagged, no task step, no preprocessor: one clear error each, nothing written
    assert run_cli("tag-checkpoint", "--input", out, "--output", tmp_path / "twice") == 2
    assert "already has the advantage prompt step" in capsys.readouterr().err
    (source / "policy_preprocessor.json").write_text(json.dumps({"name": "p", "steps": steps[:2]}))
    with pytest.raises(DatasetToolError, match="not language-conditioned"):
        tag_checkpoint(source, tmp_path / "none", "{task}\nAdvantage: {label}")
    (source / "policy_preprocessor.json").unlink()
    assert run_cli("tag-checkpoint", "--input", source, "--output", tmp_path / "x") == 2
    assert "no policy_preprocessor.json" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists() and not (tmp_path / "x").exists()


def test_tag_prompts_refuses_prompts_the_tokenizer_would_truncate(labelled, tmp_path, capsys):
    tokenizer = tmp_path / "tokenizer"
    tiny_tokenizer().save_pretrained(tokenizer)  # byte-level: one token per character
    out = tmp_path / "out"
    check = ["--tokenizer", tokenizer, "--max-length"]
    assert run_cli("tag-prompts", "--input", labelled, "--output", out, *check, "20") == 2
    assert "the tag would be truncated" in capsys.readouterr().err and not out.exists()
    assert run_cli("tag-prompts", "--input", labelled, "--output", out, *check, "64") == 0


def _label(source: Path, output: Path) -> Path:
    """`source` with an alternating advantage_indicator column (what value-label adds)."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    dataset = LeRobotDataset("local/source", root=source)
    indicator = (np.arange(dataset.meta.total_frames) % 2).astype(np.float32)[:, None]
    feature = {"dtype": "float32", "shape": (1,), "names": None}
    add_features(dataset, {"advantage_indicator": (indicator, feature)}, output_dir=output, repo_id="local/x")
    return output


def _prompt_tokens(checkpoint: Path, task: str) -> torch.Tensor:
    """The token ids a checkpoint's saved preprocessor (as lerobot-eval loads it) gives `task`."""
    from lerobot.processor import PolicyProcessorPipeline

    pipeline = PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename="policy_preprocessor.json")
    features = json.loads((checkpoint / "config.json").read_text())["input_features"]
    frame = {key: torch.zeros(feature["shape"]) for key, feature in features.items()}
    return pipeline({**frame, "task": task})["observation.language.tokens"]


@pytest.mark.slow
def test_stock_smolvla_label_train_tag_and_lerobot_eval(collected_demo, tmp_path):
    """The whole tag path on a stock policy: tag-prompts -> stock lerobot-train (SmolVLA, tiny, offline)
    -> tag-checkpoint -> stock lerobot-eval on metaworld_recap; the evaluation prompt tokenises to the
    positive training prompt under the checkpoint's own saved preprocessor."""
    from tiny_vlas import lerobot_train, smolvla_backbone, smolvla_cli_flags

    tagged_data = tmp_path / "push_tagged"
    assert (
        run_cli("tag-prompts", "--input", _label(collected_demo, tmp_path / "lab"), "--output", tagged_data)
        == 0
    )
    flags = [
        *smolvla_cli_flags(smolvla_backbone(tmp_path / "smolvlm"), image_size=32),
        "--policy.max_state_dim=39",
    ]
    checkpoint = lerobot_train("lerobot-train", *flags, dataset=tagged_data, output=tmp_path / "run")
    positive = tmp_path / "positive"
    assert run_cli("tag-checkpoint", "--input", checkpoint, "--output", positive) == 0
    task = "Push the puck to a goal"
    assert torch.equal(_prompt_tokens(positive, task), _prompt_tokens(checkpoint, tagged(task, "positive")))
    assert not torch.equal(_prompt_tokens(positive, task), _prompt_tokens(checkpoint, task))
    lerobot_eval_episode(["lerobot-eval"], positive, tmp_path)


@pytest.mark.slow
def test_stock_pi05_label_train_tag_and_lerobot_eval(collected_demo, tmp_path):
    """The tag path on stock pi05 (tiny, through tests/tiny_pi05_run.py): its pipeline normalises the
    state, then writes "Task: ..., State: ...;", so the tag step goes right before that step; the
    evaluation prompt tokenises to the positive training prompt, and stock lerobot-eval runs it."""
    from tiny_vlas import PI05_CLI_FLAGS, fake_hub_cache, lerobot_train, offline_hub

    tagged_data = tmp_path / "push_tagged"
    labelled = _label(collected_demo, tmp_path / "lab")
    assert run_cli("tag-prompts", "--input", labelled, "--output", tagged_data) == 0
    runner = Path(__file__).parent / "tiny_pi05_run.py"
    # MetaWorld's 39-d state; pi05 writes it into the prompt, one byte-level token per character
    sizes = ["--policy.max_state_dim=39", "--policy.tokenizer_max_length=320"]
    with offline_hub(fake_hub_cache(tmp_path / "hub")):  # the subprocesses inherit the offline hub
        flags = [runner, "train", *PI05_CLI_FLAGS, *sizes]
        checkpoint = lerobot_train("python", *flags, dataset=tagged_data, output=tmp_path / "run")
        positive = tmp_path / "positive"
        assert run_cli("tag-checkpoint", "--input", checkpoint, "--output", positive) == 0
        steps = json.loads((positive / "policy_preprocessor.json").read_text())["steps"]
        names = [step["registry_name"] for step in steps]
        assert names[names.index(PROMPT_STEP) + 1] == "pi05_prepare_state_tokenizer_processor_step"
        assert names.index("normalizer_processor") < names.index(PROMPT_STEP)
        task = "Push the puck to a goal"
        plain = _prompt_tokens(positive, task)
        assert torch.equal(plain, _prompt_tokens(checkpoint, tagged(task, "positive")))
        assert not torch.equal(plain, _prompt_tokens(checkpoint, task))
        lerobot_eval_episode(["python", runner, "eval"], positive, tmp_path)
