"""Build hook that ships `lerobot_policy_pi_star_recap_alias.pth`, so that the import path
`lerobot.policies.pi_star_recap` resolves to this package (see src/_lerobot_policy_pi_star_recap_alias.py).
Everything else about the build is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "lerobot_policy_pi_star_recap_alias.pth"
# `site` executes .pth lines that start with "import" at interpreter start; this one only installs a finder.
PTH_LINE = "import _lerobot_policy_pi_star_recap_alias\n"


class BuildPyWithAliasPth(build_py):
    """build_py that also writes the .pth to the top of the wheel, i.e. into site-packages. A regular
    wheel is made of build_lib; an editable wheel is made of the install folder instead (its modules stay
    in src/), so there the .pth goes to that folder."""

    def run(self) -> None:
        super().run()
        top = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        Path(top).mkdir(parents=True, exist_ok=True)
        (Path(top) / PTH_NAME).write_text(PTH_LINE)


setup(cmdclass={"build_py": BuildPyWithAliasPth})
