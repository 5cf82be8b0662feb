"""`lerobot.policies.pi_star_recap` as an alias of `lerobot_policy_pi_star_recap` (the canonical name).

`lerobot_policy_pi_star_recap_alias.pth`, installed next to the package, imports this module at
interpreter start. It only puts a finder on `sys.meta_path`; the package (and with it torch and
lerobot) is imported when the alias is, and the alias resolves to the very same module objects.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

ALIAS = "lerobot.policies.pi_star_recap"
CANONICAL = "lerobot_policy_pi_star_recap"


def canonical_name(alias: str) -> str:
    """`lerobot.policies.pi_star_recap.x` -> `lerobot_policy_pi_star_recap.x`."""
    return CANONICAL + alias.removeprefix(ALIAS)


class AliasFinder:
    """Finder and loader for the alias and its submodules only; every other name is left to Python."""

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None) -> ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        if importlib.util.find_spec(canonical_name(fullname)) is None:
            return None  # e.g. a submodule the package does not have
        return ModuleSpec(fullname, cls)

    @staticmethod
    def create_module(spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(canonical_name(spec.name))

    @staticmethod
    def exec_module(module: ModuleType) -> None:
        """Nothing to run: the canonical import in `create_module` already executed the module."""


def install() -> None:
    """Put the finder first, before the path finder, which would otherwise find the package's submodule
    files under the alias name and execute them a second time as separate modules."""
    if AliasFinder not in sys.meta_path:
        sys.meta_path.insert(0, AliasFinder)


install()
