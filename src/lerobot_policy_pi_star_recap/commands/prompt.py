"""`pi-star-recap tag-prompts` and `tag-checkpoint`: RECAP for stock LeRobot VLAs (pi05, pi0, SmolVLA)
through the task prompt, "<task>\\nAdvantage: positive|negative" (see stock_vlas/prompt_tags.py).

    pi-star-recap value-label ... --output labelled          # indicators, as for pi_star_recap
    pi-star-recap tag-prompts --input labelled --output tagged
    lerobot-train --policy.path=lerobot/pi05_base --dataset.root=tagged ...   # stock, unchanged
    pi-star-recap tag-checkpoint --input <run>/checkpoints/last/pretrained_model --output positive
    lerobot-eval --policy.path=positive ...                  # prompts carry "Advantage: positive"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import HelpFormatter, report_errors

TEMPLATE_HELP = "tag template with {task} and {label} (label: positive / negative)"


def register(subparsers) -> None:
    from ..stock_vlas.prompt_tags import DEFAULT_TEMPLATE

    tag = subparsers.add_parser(
        "tag-prompts",
        help="write a copy of a labelled dataset whose frames carry the advantage tag in their task prompt",
        description=(
            "Per frame, the task becomes the template with the frame's advantage_indicator (value-label; "
            "expert-corrected frames positive); a seeded share of frames keeps the plain task (conditioning "
            "dropout). The original task stays in base_task_index. Train any stock LeRobot VLA on it."
        ),
        formatter_class=HelpFormatter,
    )
    tag.add_argument("--input", required=True, type=Path, help="labelled dataset root (value-label output)")
    tag.add_argument("--output", required=True, type=Path, help="new dataset folder (must not exist)")
    tag.add_argument("--template", default=DEFAULT_TEMPLATE, help=TEMPLATE_HELP)
    tag.add_argument("--untagged-fraction", type=float, default=0.3, help="share of frames left untagged")
    tag.add_argument("--seed", type=int, default=0, help="seed of the untagged frames")
    tag.add_argument(
        "--tokenizer",
        default=None,
        help="check that every tagged prompt fits --max-length tokens of this tokenizer (hub id or folder, "
        "e.g. the policy's vlm_model_name; pi0 / pi05: google/paligemma-3b-pt-224)",
    )
    tag.add_argument("--max-length", type=int, default=48, help="the policy's tokenizer_max_length")
    tag.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    tag.set_defaults(run=run_tag_prompts)

    checkpoint = subparsers.add_parser(
        "tag-checkpoint",
        help="copy a checkpoint with a preprocessor step that appends 'Advantage: positive' to the task",
        description=(
            "Inserts the advantage prompt step into the checkpoint's saved policy_preprocessor.json, before "
            "the first step that reads the task, so stock lerobot-eval / lerobot-record / lerobot-rollout "
            "prompt the policy with the positive tag. Classifier-free guidance (cfg_beta) is not possible "
            "through the prompt; pi_star_recap's own advantage input supports it."
        ),
        formatter_class=HelpFormatter,
    )
    checkpoint.add_argument(
        "--input", required=True, type=Path, help="a checkpoint's pretrained_model folder"
    )
    checkpoint.add_argument(
        "--output", required=True, type=Path, help="new checkpoint folder (must not exist)"
    )
    checkpoint.add_argument("--template", default=DEFAULT_TEMPLATE, help=TEMPLATE_HELP)
    checkpoint.add_argument("--label", default="positive", choices=["positive", "negative"])
    checkpoint.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    checkpoint.set_defaults(run=run_tag_checkpoint)


@report_errors("tag-prompts")
def run_tag_prompts(args: argparse.Namespace) -> int:
    from ..data.writing import atomic_output_dir, check_dataset_root
    from ..stock_vlas.prompt_tags import check_prompts_fit, tag_dataset

    check_dataset_root(args.input, "--input")
    with atomic_output_dir(args.output, args.overwrite, sources=[args.input]) as staged:
        counts = tag_dataset(args.input, staged, args.template, args.untagged_fraction, args.seed)
        if args.tokenizer:
            check_prompts_fit(counts["prompts"], args.tokenizer, args.max_length)
    print(
        f"Tagged {counts['frames']} frames -> {args.output}: {counts['positive']} positive, "
        f"{counts['negative']} negative, {counts['untagged']} untagged ({len(counts['prompts'])} prompts)"
    )
    return 0


@report_errors("tag-checkpoint")
def run_tag_checkpoint(args: argparse.Namespace) -> int:
    from ..data.writing import atomic_output_dir
    from ..stock_vlas.prompt_tags import PREPROCESSOR, tag_checkpoint

    if not args.input.is_dir():
        raise FileNotFoundError(f"--input {args.input} does not exist.")
    with atomic_output_dir(args.output, args.overwrite, sources=[args.input], written=PREPROCESSOR) as staged:
        position = tag_checkpoint(args.input, staged, args.template, args.label)
    print(f"Wrote {args.output}: advantage prompt step ({args.label}) at preprocessor step {position}")
    return 0
