"""`lerobot.policies.pi_star_recap` is an alias of `lerobot_policy_pi_star_recap`, installed with the
package and lazy: a fresh interpreter imports neither lerobot nor torch until the alias is used.

Both tests run a fresh interpreter, because only interpreter start processes the installed .pth file."""

import json

from conftest import run_tool

REINSTALL = (
    "the alias .pth is missing from site-packages; reinstall the package (make setup, or pip install -e .)"
)


def test_startup_installs_the_finder_and_imports_nothing_heavy(tmp_path):
    code = (
        "import json, sys; print(json.dumps({"
        "'finder': any(getattr(f, '__module__', '') == '_lerobot_policy_pi_star_recap_alias' for f in sys.meta_path), "
        "'heavy': sorted(m for m in ('torch', 'lerobot', 'lerobot_policy_pi_star_recap') if m in sys.modules)}))"
    )
    state = json.loads(run_tool("python", "-c", code, cwd=tmp_path).stdout)
    assert state["finder"], REINSTALL
    assert state["heavy"] == []


def test_the_alias_is_the_same_module(tmp_path):
    code = """
from lerobot.policies.pi_star_recap import PiStarRECAPConfig
import lerobot.policies
import lerobot.policies.pi_star_recap as alias
import lerobot.policies.pi_star_recap.configuration_pi_star_recap as alias_config
import lerobot_policy_pi_star_recap as canonical
assert alias is canonical and lerobot.policies.pi_star_recap is canonical
assert PiStarRECAPConfig is canonical.PiStarRECAPConfig
assert alias_config is canonical.configuration_pi_star_recap
try:
    import lerobot.policies.pi_star_recap.no_such_module
except ModuleNotFoundError:
    print("ok")
"""
    result = run_tool("python", "-c", code, cwd=tmp_path)
    assert result.stdout.strip().endswith("ok")
