"""The README's main job, `pi-star-recap demo`, as a command: its refusals, a kill -9 mid-run, and one
--quick smoke-test run end to end through the real lerobot-train / lerobot-eval, read by one test per
concern: stages, report, labels (the loop's own logic is tested without them in test_loop.py)."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, WORKERS, cli_output, run_tool
from PIL import Image


def _processes_writing_into(folder: Path) -> list[int]:
    """Pids of the live processes whose command line names `folder` (zombies excluded)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            alive = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if proc.name.isdigit() and alive and str(folder) in (proc / "cmdline").read_bytes().decode():
                pids.append(int(proc.name))
        except (OSError, IndexError):
            continue  # a process that ended while we looked
    return pids


def _kill_demo_mid_training(out: Path, cwd: Path, seed: int = 0) -> str:
    """Start the quick demo, kill -9 it a seeded random delay after its stage-1 lerobot-train starts; the
    demo's children must die with it. Returns where the kill landed."""
    argv = [str(BIN / "pi-star-recap"), "demo", "--quick", "--task=button-press-v3", f"--output={out}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300 * WORKERS
        while not (out / "logs" / "train_stage1.log").is_file():
            assert process.poll() is None and time.monotonic() < deadline, "the demo never reached stage 1"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0, 10))
        assert _processes_writing_into(out), "stage 1's lerobot-train should be running"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    deadline = time.monotonic() + 30
    while _processes_writing_into(out):  # PR_SET_PDEATHSIG: lerobot-train is killed with the demo
        assert time.monotonic() < deadline, (
            f"orphans still writing into {out}: {_processes_writing_into(out)}"
        )
        time.sleep(0.1)
    written = sorted(p.name for p in (out / "stage1" / "checkpoints").glob("*")) if out.exists() else []
    return f"mid stage 1 (checkpoints so far: {written or 'none'})"


@pytest.mark.slow
@pytest.mark.xdist_group("demo_runs")  # each demo run uses both cores: never two at once
def test_a_killed_demo_leaves_no_orphan_and_no_results(tmp_path, capsys):
    """kill -9 of the demo mid stage 1: no child keeps writing into --output, and no results.json."""
    out = tmp_path / "demo"
    landed = _kill_demo_mid_training(out, tmp_path)
    with capsys.disabled():
        print(f"\nkill -9 of demo: {landed}")
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("finished", [False, True])
def test_an_existing_output_needs_overwrite(tmp_path, finished, capsys):
    out = tmp_path / "demo"
    (out / "stage1").mkdir(parents=True)
    if finished:
        (out / "results.json").write_text("{}")
    _, refused = cli_output(capsys, "demo", "--quick", f"--output={out}", returncode=2)
    state = "a finished demo" if finished else "an unfinished run (no results.json)"
    assert f"holds {state}; pass --overwrite" in refused
    assert (out / "stage1").is_dir()


@pytest.mark.xdist_group("demo_runs")
def test_xdist_keeps_a_group_on_one_worker(request):
    """The demo tests share one run only if their xdist_group holds: with pytest 9.2 and pytest-xdist 3.8
    loadgroup silently splits groups (pyproject pins pytest below 9.2). Under loadgroup a grouped test's
    id carries its group."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@demo_runs"), request.node.nodeid


def test_xdist_workers_compute_on_their_share_of_the_cores():
    """Each of `make test`'s two workers, and what it starts, uses one thread per core it owns: with torch's
    default (every core) in both, the machine is oversubscribed and CPU-bound tests run many times slower."""
    if WORKERS > 1:
        threads = max(1, (os.cpu_count() or 1) // WORKERS)
        assert torch.get_num_threads() == threads
        assert os.environ["OMP_NUM_THREADS"] == str(threads)


@pytest.fixture(scope="session")  # not module: pytest-xdist may tear a module fixture down between tests
def quick_demo(tmp_path_factory) -> tuple[Path, dict, str]:
    """One `demo --quick` run through the real lerobot-train / lerobot-eval, shared by the tests of its
    three concerns (one xdist group, so one worker): its folder, its results.json and what it printed."""
    work = tmp_path_factory.mktemp("quick_demo")
    out = work / "demo"
    printed = run_tool(
        "pi-star-recap", "demo", "--quick", "--task=button-press-v3", f"--output={out}", cwd=work, timeout=900
    ).stdout
    return out, json.loads((out / "results.json").read_text()), printed


@pytest.mark.slow
@pytest.mark.xdist_group("demo_runs")
def test_quick_demo_trains_and_evaluates_every_stage(quick_demo):
    """Stage 1, the null control and stage 2, each trained by lerobot-train and evaluated by lerobot-eval
    on the same env seeds."""
    out, report, _ = quick_demo
    assert [s["stage"] for s in report["stages"]] == [
        "stage 1 (BC on demos)",
        "null control (stage 1 + stage-2 steps on the demos)",
        "stage 2 (RECAP, iteration 1)",
    ]
    for name in ("stage1", "null_control", "stage2"):
        assert (out / name / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()
    assert (out / "stage2" / "tensorboard").is_dir()
    for name, path in report["eval_info"].items():
        info = json.loads(Path(path).read_text())
        assert info["overall"]["n_episodes"] == 3
        assert report["successes"][name] == [bool(s) for s in info["per_task"][0]["metrics"]["successes"]]


@pytest.mark.slow
@pytest.mark.xdist_group("demo_runs")
def test_quick_demo_reports_paired_comparisons_tables_and_plots(quick_demo):
    out, report, printed = quick_demo
    for stage in report["stages"]:
        assert stage["episodes"] == 3 and 0.0 <= stage["success_rate"] <= 1.0
        low, high = stage["success_ci"]
        assert 0.0 <= low <= stage["success_rate"] <= high <= 1.0
    # paired comparisons on the same seeds: null control vs stage 1, stage 2 vs stage 1 and vs the control
    pairs = [(c["stage"].split(" (")[0], c["baseline"].split(" (")[0]) for c in report["comparisons"]]
    assert pairs == [("null control", "stage 1"), ("stage 2", "stage 1"), ("stage 2", "null control")]
    for c in report["comparisons"]:
        assert c["episodes"] == 3 and c["ci_low"] <= c["difference"] <= c["ci_high"]
    for path in report["plots"].values():
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert "| stage 2 (RECAP, iteration 1) | 3 |" in (out / "results.md").read_text()
    assert "| stage 1 (BC on demos) |" in printed  # the table is printed at the end


@pytest.mark.slow
@pytest.mark.xdist_group("demo_runs")
def test_quick_demo_trains_stage_2_on_cross_fitted_labels(quick_demo):
    """Two value functions, each on half of the episodes; the labelled copy; held-out value plots."""
    out, _, _ = quick_demo
    for fold in ("fold0", "fold1"):
        assert (out / "value_mixed1" / fold / "checkpoints" / "last" / "pretrained_model").is_dir()
    assert (out / "data" / "mixed1_labelled" / "meta" / "info.json").is_file()
    offline = json.loads((out / "offline_eval" / "offline_eval.json").read_text())
    assert set(offline["episode_indices"]) <= {0, 2, 4, 6}  # fold 0 trained on the odd episodes only


def test_demo_checks_the_task_before_creating_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    _, refused = cli_output(capsys, "demo", "--quick", "--task=nope", f"--output={out}", returncode=2)
    assert "pi-star-recap demo: error: unknown MetaWorld task 'nope'" in refused
    assert not out.exists()


def test_stock_base_policy_flags(tmp_path):
    """--base-policy smolvla builds stock SmolVLA tiny from the package's SmolVLM folder (written once);
    pi05 has no small offline form, so without --base-path it is refused with the fix."""
    from lerobot_policy_pi_star_recap.stock_vlas.base_policies import policy_flags

    flags = policy_flags("smolvla", tmp_path, image_size=96, state_dim=39, chunk_size=16, n_action_steps=8)
    assert flags[0] == "--policy.type=smolvla"
    for flag in ("--policy.max_state_dim=39", "--policy.resize_imgs_with_padding=[96,96]",
                 "--policy.load_vlm_weights=false", "--policy.n_action_steps=8"):  # fmt: skip
        assert flag in flags, flag
    assert f"--policy.vlm_model_name={tmp_path / 'tiny_smolvlm'}" in flags
    assert (tmp_path / "tiny_smolvlm" / "processor_config.json").is_file()
    with pytest.raises(ValueError, match="--base-path"):
        policy_flags("pi05", tmp_path, image_size=96, state_dim=39, chunk_size=16, n_action_steps=8)


def test_an_invalid_plan_leaves_the_existing_output_alone(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "stage1").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    _, refused = cli_output(capsys, "demo", "--demos=201", f"--output={out}", "--overwrite", returncode=2)
    assert "--demos is too large" in refused
    assert (out / "results.json").read_text() == "{}" and (out / "stage1").is_dir()
