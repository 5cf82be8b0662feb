"""docs/configuration.md is generated from the config (scripts/gen_config_doc.py) and kept in step with it:
the page must equal what the generator writes now, and every field must carry a description (the comment
on its line or right above it) for the generator to run at all."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from lerobot_policy_pi_star_recap.configuration_pi_star_recap import GROUPS, PiStarRECAPConfig

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = load_script(ROOT / "scripts" / "gen_config_doc.py", "gen_config_doc")


def test_configuration_page_is_up_to_date():
    page = ROOT / "docs" / "configuration.md"
    assert page.is_file(), "docs/configuration.md is missing: run `python scripts/gen_config_doc.py`"
    assert page.read_text() == gen.render(), (
        "docs/configuration.md is stale: run `python scripts/gen_config_doc.py` and commit the result"
    )


def test_the_page_is_deterministic():
    assert gen.render() == gen.render()


def test_every_option_has_a_row_with_its_command_line_name():
    text = gen.render()
    own = PiStarRECAPConfig.__dict__["__annotations__"]
    for f in fields(PiStarRECAPConfig):
        if f.name in GROUPS:
            assert f"## `{f.name}` group" in text
            assert all(f"| `--policy.{f.name}.{g.name}`" in text for g in fields(GROUPS[f.name]))
        else:
            assert f"| `--policy.{f.name}`" in text, f.name
    assert len(own) > len(GROUPS)  # the page covers the policy's own fields, not only LeRobot's


def test_the_18_seed_options_are_top_level_fields_and_marked():
    top_level = {f.name for f in fields(PiStarRECAPConfig)} - set(GROUPS)
    assert len(set(gen.SEED_OPTIONS)) == 18
    assert set(gen.SEED_OPTIONS) <= top_level
    marked = [line for line in gen.render().splitlines() if f" {gen.SEED_MARK} |" in line]
    assert len(marked) == 18


def test_check_exits_1_and_names_the_fix_when_the_page_is_stale(tmp_path, capsys):
    page = tmp_path / "configuration.md"
    assert gen.main(["--check", "--output", str(page)]) == 1  # missing
    assert "run `python scripts/gen_config_doc.py`" in capsys.readouterr().err
    page.write_text(gen.render().replace("| `--policy.chunk_size`", "| `--policy.chunk`"))
    assert gen.main(["--check", "--output", str(page)]) == 1
    assert "is stale: run `python scripts/gen_config_doc.py`" in capsys.readouterr().err
    assert gen.main(["--output", str(page)]) == 0
    assert gen.main(["--check", "--output", str(page)]) == 0


def test_a_field_without_a_description_is_an_error(tmp_path):
    """The description is the comment block above a field (not a `# ---` section header, not the previous
    field's trailing comment) followed by the comment ending its line; a field with neither is named."""
    (tmp_path / "described.py").write_text(
        "from dataclasses import dataclass, field\n\n\n"
        "@dataclass\n"
        "class Options:\n"
        '    """Some options."""\n\n'
        "    # --- A section ---\n"
        "    # Above the field,\n"
        "    # over two lines.\n"
        "    above: int = 1  # and on its line\n"
        "    on_its_line: float = 0.5  # only here\n"
        "    undescribed: bool = False\n"
        "    # above a field spread over lines\n"
        "    spread: dict = field(\n"
        "        default_factory=dict\n"
        "    )\n"
        "    # --- Another section ---\n"
        "    undescribed_too: str = 'x'  # type: ignore\n"
    )
    module = load_script(tmp_path / "described.py", "described_options")
    assert gen.field_comments(module.Options) == {
        "above": "Above the field, over two lines. and on its line",
        "on_its_line": "only here",
        "spread": "above a field spread over lines",
    }
    with pytest.raises(
        ValueError, match=r"Options: no description for undescribed, undescribed_too\."
    ) as error:
        gen.describe(module.Options, [f.name for f in fields(module.Options)])
    assert "python scripts/gen_config_doc.py" in str(error.value)


def test_presets_and_renamed_options_are_listed():
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import IQL_PRESETS, MODES, MOVED

    text = gen.render()
    assert all(f"| `{mode}` |" in text for mode in MODES)
    assert all(f"| `{preset}` |" in text for preset in IQL_PRESETS)
    assert all(f"| `{old}` | `--policy.{new}` |" in text for old, new in MOVED.items())
