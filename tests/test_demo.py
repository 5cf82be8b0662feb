"""The README's main job, `pi-star-recap demo`, in its --quick smoke-test size: every stage runs through
the real lerobot-train / lerobot-eval and the report is written."""

import json
from pathlib import Path

import pytest
from conftest import run_tool
from PIL import Image


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_tool(
        "pi-star-recap",
        "demo",
        "--quick",
        "--task=button-press-v3",
        f"--output={out}",
        cwd=tmp_path,
        timeout=900,
    )
    report = json.loads((out / "results.json").read_text())
    assert [s["stage"] for s in report["stages"]] == [
        "stage 1 (BC on demos)",
        "null control (stage 1 + stage-2 steps on the demos)",
        "stage 2 (RECAP, iteration 1)",
    ]
    for stage in report["stages"]:
        assert stage["episodes"] == 3 and 0.0 <= stage["success_rate"] <= 1.0
        low, high = stage["success_ci"]
        assert 0.0 <= low <= stage["success_rate"] <= high <= 1.0
    # paired comparisons on the same seeds: null control vs stage 1, stage 2 vs stage 1 and vs the control
    pairs = [(c["stage"].split(" (")[0], c["baseline"].split(" (")[0]) for c in report["comparisons"]]
    assert pairs == [("null control", "stage 1"), ("stage 2", "stage 1"), ("stage 2", "null control")]
    for c in report["comparisons"]:
        assert c["episodes"] == 3 and c["ci_low"] <= c["difference"] <= c["ci_high"]
    for path in report["eval_info"].values():
        assert json.loads(Path(path).read_text())["overall"]["n_episodes"] == 3
    for path in report["plots"].values():
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert "| stage 2 (RECAP, iteration 1) | 3 |" in (out / "results.md").read_text()
    assert "| stage 1 (BC on demos) |" in result.stdout  # the table is printed at the end
    for name in ("stage1", "null_control", "stage2"):
        assert (out / name / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()
    assert (out / "stage2" / "tensorboard").is_dir()
    # stage 2 trained on cross-fitted labels: two value functions, the labelled copy, held-out value plots
    for fold in ("fold0", "fold1"):
        assert (out / "value_mixed1" / fold / "checkpoints" / "last" / "pretrained_model").is_dir()
    assert (out / "data" / "mixed1_labelled" / "meta" / "info.json").is_file()
    offline = json.loads((out / "offline_eval" / "offline_eval.json").read_text())
    assert set(offline["episode_indices"]) <= {0, 2, 4, 6}  # fold 0 trained on the odd episodes only


def test_demo_checks_the_task_before_creating_anything(tmp_path):
    out = tmp_path / "demo"
    result = run_tool(
        "pi-star-recap",
        "demo",
        "--quick",
        "--task=nope",
        f"--output={out}",
        cwd=tmp_path,
        timeout=120,
        returncode=2,
    )
    assert "pi-star-recap demo: error: unknown MetaWorld task 'nope'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.slow
def test_demo_with_a_stock_smolvla_trains_through_the_prompt(tmp_path):
    """--base-policy smolvla: stock SmolVLA (tiny, offline) for stage 1, this package's cross-fitted values
    for the labels, tag-prompts, stock lerobot-train from stage 1, tag-checkpoint, stock lerobot-eval."""
    out = tmp_path / "demo"
    small = ["--demos=2", "--rollouts=1", "--corrections=1", "--stage1-steps=4", "--stage2-steps=4"]
    small += ["--value-steps=4", "--eval-episodes=2", "--eval-batch-size=2", "--episode-length=40"]
    run_tool(
        "pi-star-recap",
        "demo",
        "--quick",
        *small,
        "--no-null-control",
        "--base-policy=smolvla",
        "--task=button-press-v3",
        f"--output={out}",
        cwd=tmp_path,
        timeout=900,
    )
    report = json.loads((out / "results.json").read_text())
    assert report["base_policy"] == "smolvla"
    assert [s["stage"] for s in report["stages"]] == [
        "stage 1 (BC on demos)",
        "stage 2 (RECAP prompt, iteration 1)",
    ]
    stage1 = json.loads(
        (out / "stage1" / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text()
    )
    assert stage1["type"] == "smolvla"
    tasks = (out / "data" / "mixed1_tagged" / "meta" / "tasks.parquet").read_bytes()
    assert b"Advantage: positive" in tasks and b"Advantage: negative" in tasks
    positive = out / "stage2" / "checkpoints" / "last" / "pretrained_model"
    steps = json.loads((positive / "policy_preprocessor.json").read_text())["steps"]
    assert "pi_star_recap_advantage_prompt" in [s["registry_name"] for s in steps]
    assert Path(report["eval_info"]["stage 2 (RECAP prompt, iteration 1)"]).parent.name == "stage2"
