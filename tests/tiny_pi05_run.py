"""Stock `lerobot-train` / `lerobot-eval` (LeRobot's own `main`s, unchanged) with pi05 shrunk by
`tiny_vlas.tiny_pi05`: only the model's size is patched, every other line run is LeRobot's.

Usage: python tests/tiny_pi05_run.py train|eval <lerobot-train / lerobot-eval arguments>
Run it with `tiny_vlas.offline_env(fake_hub_cache(...))` in the environment, so pi05's processor finds
its hard-coded tokenizer id offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tiny_vlas and its siblings, also under `python -m`

from tiny_vlas import tiny_pi05  # noqa: E402


def main() -> None:
    """Apply the size patches, then hand over to the command (which reads sys.argv itself)."""
    command = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if command == "train":
        from lerobot.scripts.lerobot_train import main as run
    elif command == "eval":
        from lerobot.scripts.lerobot_eval import main as run
    else:
        raise SystemExit("usage: python tests/tiny_pi05_run.py train|eval <arguments>")
    with tiny_pi05():
        run()


if __name__ == "__main__":
    main()
