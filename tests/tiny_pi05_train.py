"""Stock `lerobot-train` (lerobot.scripts.lerobot_train.main, unchanged) with pi05 shrunk by
`tiny_vlas.tiny_pi05`: only the model's size is patched, every other line run is LeRobot's.

Usage: python tests/tiny_pi05_train.py <lerobot-train arguments, e.g. tiny_vlas.PI05_CLI_FLAGS ...>
Run it with `tiny_vlas.offline_env(fake_hub_cache(...))` in the environment, so pi05's processor finds
its hard-coded tokenizer id offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tiny_vlas and its siblings, also under `python -m`

from tiny_vlas import tiny_pi05  # noqa: E402


def main() -> None:
    """Apply the size patches, then hand over to lerobot-train (which reads sys.argv itself)."""
    from lerobot.scripts.lerobot_train import main as lerobot_train

    with tiny_pi05():
        lerobot_train()


if __name__ == "__main__":
    main()
