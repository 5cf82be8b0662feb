"""`pi-star-recap migrate`: bring checkpoints written before the config's option groups to today's layout,
so that stock `lerobot-train` / `lerobot-eval --policy.path=<checkpoint>` read them.

This package's own loaders migrate on the fly (`PiStarRECAPConfig.from_pretrained`); LeRobot's scripts decode
config.json with draccus, which refuses the old flat keys and has no hook for them. The command rewrites
config.json (and the `policy` section of train_config.json, which `--resume` reads) once, keeping each
original beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import HelpFormatter, report_errors

BACKUP_SUFFIX = ".flat-layout"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="rewrite checkpoints of the flat config layout for stock lerobot-train / lerobot-eval",
        description=(
            "Rewrite the config.json of pi_star_recap checkpoints written before the option groups "
            "(flat `expert_width`, ...) into today's layout ({'expert': {'width': ...}}), and the `policy` "
            "section of a train_config.json beside it. Each original is kept as <name>" + BACKUP_SUFFIX + ". "
            "A lerobot-train output folder is searched for checkpoints/*/pretrained_model. Checkpoints "
            "already in today's layout are left untouched."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        help="a pretrained_model folder (holding config.json) or a lerobot-train output folder",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    parser.set_defaults(run=run)


def checkpoint_dirs(path: Path) -> list[Path]:
    """The folders holding a config.json under `path`: itself, or each checkpoint of a training run."""
    if (path / "config.json").is_file():
        return [path]
    found: dict[Path, Path] = {}  # by real path: checkpoints/last links to the newest step
    for config in sorted(path.glob("checkpoints/*/pretrained_model/config.json")):
        found.setdefault(config.parent.resolve(), config.parent)
    if not found:
        raise FileNotFoundError(
            f"{path}: no config.json here and no checkpoints/*/pretrained_model/config.json below; give a "
            "checkpoint's pretrained_model folder or a lerobot-train output folder."
        )
    return list(found.values())


def migrated_policy(raw: dict[str, Any], where: Path) -> dict[str, Any]:
    """`raw` (a pi_star_recap config as JSON) in today's layout, checked by the stock draccus decoding."""
    from lerobot.configs.policies import PreTrainedConfig

    from ..configuration_pi_star_recap import PiStarRECAPConfig, migrate_flat_keys

    if raw.get("type") != PiStarRECAPConfig.get_choice_name(PiStarRECAPConfig):
        raise ValueError(f"{where}: a {raw.get('type')!r} policy, not pi_star_recap; nothing to migrate.")
    migrated = migrate_flat_keys(raw)
    with tempfile.TemporaryDirectory() as check:
        (Path(check) / "config.json").write_text(json.dumps(migrated))
        PreTrainedConfig.from_pretrained(check)  # what lerobot-train --policy.path does
    return migrated


def migrate_file(path: Path, section: str | None, dry_run: bool) -> bool:
    """Rewrite one JSON file (or its `section`) in today's layout; whether it changed."""
    from ..data.writing import write_text_atomic

    raw = json.loads(path.read_text())
    policy = raw[section] if section else raw
    migrated = migrated_policy(policy, path)
    if migrated == policy:
        return False
    if not dry_run:
        shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
        write_text_atomic(path, json.dumps({**raw, section: migrated} if section else migrated, indent=4))
    return True


@report_errors("migrate")
def run(args: argparse.Namespace) -> int:
    for given in args.checkpoints:
        for folder in checkpoint_dirs(given.expanduser()):
            changed = migrate_file(folder / "config.json", None, args.dry_run)
            train_config = folder / "train_config.json"
            if train_config.is_file() and "policy" in json.loads(train_config.read_text()):
                changed |= migrate_file(train_config, "policy", args.dry_run)
            verb = ("would migrate" if args.dry_run else "migrated") if changed else "already current:"
            print(f"{verb} {folder}", flush=True)
    return 0
