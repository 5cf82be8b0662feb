"""Write docs/configuration.md from the policy config (`PiStarRECAPConfig`).

    python scripts/gen_config_doc.py            # (re)write docs/configuration.md
    python scripts/gen_config_doc.py --check    # exit 1 if docs/configuration.md is stale

The meaning of each option is the comment that documents its field in configuration_pi_star_recap.py:
the `# ...` comment lines right above the field (after a blank line or a `# --- section ---` header
they start a new block) followed by the comment at the end of the field's line. A field of the policy's
own config or of one of its option groups without such a comment is an error here, and so a failure of
tests/test_config_doc.py: describe a new field where it is declared, then rerun this script. The groups'
introductions are their class docstrings; presets and renamed options come from the tables `MODES`,
`MODE_DEFAULTS`, `IQL_PRESETS`, `MOVED` and `BECAME_FLAGS`.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import re
import sys
import tokenize
from dataclasses import MISSING, Field, fields
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = "python scripts/gen_config_doc.py"

sys.path.insert(0, str(ROOT / "src"))  # a checkout without the package installed
from lerobot_policy_pi_star_recap import configuration_pi_star_recap as conf  # noqa: E402

# The options of the original spec (the seed README's "Configuration" section: its constructor example,
# "IQL Hyperparameters", "Training Strategy" and "Flow Matching"), marked in the tables.
SEED_OPTIONS = (
    "vlm_model_name",
    "chunk_size",
    "n_action_steps",
    "iql_expectile",
    "iql_temperature",
    "iql_discount",
    "demo_weight",
    "auto_weight",
    "intervention_weight",
    "freeze_vlm",
    "freeze_vision_encoder",
    "train_expert_only",
    "q_lr",
    "v_lr",
    "policy_lr",
    "num_inference_steps",
    "use_advantage_conditioning",
    "advantage_scale",
)
SEED_MARK = "★"

# The fields PiStarRECAPConfig inherits from LeRobot's PreTrainedConfig: LeRobot's, described here in a
# line each (tests/test_config_doc.py fails when LeRobot adds or removes one).
LEROBOT_FIELDS = {
    "n_obs_steps": "Observation frames per step; this policy supports only 1 (the current frame).",
    "input_features": "The policy's inputs; lerobot-train fills them from the dataset.",
    "output_features": "The policy's outputs (`action`); lerobot-train fills them from the dataset.",
    "device": "`cuda`, `cuda:0`, `cpu` or `mps`; an unavailable device falls back to one that is available.",
    "use_amp": "LeRobot's automatic mixed precision; this policy's own switch is `--policy.dtype=bfloat16`.",
    "use_peft": "Whether the policy was trained with PEFT (LeRobot).",
    "push_to_hub": "Upload the trained policy to the Hugging Face hub (needs `--policy.repo_id`).",
    "repo_id": "Hub repository the policy is pushed to.",
    "private": "Make the hub repository private.",
    "tags": "Tags of the policy on the hub.",
    "license": "License of the policy on the hub.",
    "pretrained_path": "Set by `--policy.path=<checkpoint or hub id>`: the weights the policy starts from.",
    "pretrained_revision": "Hub revision (commit, branch or tag) of `pretrained_path`.",
}

PRAGMA = re.compile(r"^(type:|noqa|fmt:|pragma|pyright:|mypy:)")
SECTION = re.compile(r"^-{3}")  # `# --- Base model ----`


# --- The descriptions: comments next to the fields ----------------------------------------------------
def field_comments(cls: type) -> dict[str, str]:
    """{field name: its description} for the fields `cls` declares itself (not inherited ones), read from
    the comments of its source: the comment block right above the field, then the comment ending its line.
    Fields without any are left out."""
    source = inspect.getsource(inspect.getmodule(cls))
    lines = source.splitlines()
    comments: dict[int, tuple[int, str]] = {}  # line (1-based) -> (column, text)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = (token.start[1], token.string.lstrip("#").strip())
    node = next(
        n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls.__name__
    )
    found = {}
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above = []
        line = statement.lineno - 1
        while line in comments and not lines[line - 1][: comments[line][0]].strip():
            text = comments[line][1]
            if SECTION.match(text):
                break
            above.insert(0, text)
            line -= 1
        trailing = [
            comments[n][1]
            for n in range(statement.lineno, statement.end_lineno + 1)
            if n in comments and lines[n - 1][: comments[n][0]].strip()
        ]
        text = " ".join(t for t in above + trailing if t and not PRAGMA.match(t))
        if text:
            found[statement.target.id] = text
    return found


def field_types(cls: type) -> dict[str, str]:
    """{field name: its annotation as written} for the fields `cls` declares itself."""
    node = next(
        n
        for n in ast.walk(ast.parse(inspect.getsource(inspect.getmodule(cls))))
        if isinstance(n, ast.ClassDef) and n.name == cls.__name__
    )
    return {
        s.target.id: ast.unparse(s.annotation)
        for s in node.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }


def describe(cls: type, own: list[str]) -> dict[str, str]:
    """`field_comments(cls)` for the fields named in `own`; raises naming each one without a comment."""
    found = field_comments(cls)
    missing = [name for name in own if name not in found]
    if missing:
        raise ValueError(
            f"{cls.__name__}: no description for {', '.join(missing)}. Describe each field with a comment on "
            f"its line or right above it in {Path(inspect.getsourcefile(cls)).name}, then run `{COMMAND}`."
        )
    return found


# --- Rendering -----------------------------------------------------------------------------------
def default_of(f: Field) -> object:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def plain(value: object) -> object:
    """`value` with enums by their value and paths as strings, for json."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def cli_value(value: object) -> str:
    """A default as it is written after `--policy.x=` (YAML, which LeRobot's parser reads values as)."""
    if value is MISSING:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(plain(value))


def escape(text: str) -> str:
    """Text for a Markdown table cell: `|` escaped everywhere; `<` and `*` escaped outside code spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside backticks
        parts[i] = parts[i].replace("<", "&lt;").replace("*", r"\*")
    return "`".join(parts).replace("|", r"\|")


def code(text: str) -> str:
    return f"`{text}`".replace("|", r"\|")


def type_name(annotation: object) -> str:
    """A runtime annotation written as in source: `dict[str, PolicyFeature] | None`."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if text is None or hasattr(annotation, "__args__"):
        text = str(annotation)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text).replace("NoneType", "None")


def table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    out = ["| Option | Type | Default | Meaning |", "|---|---|---|---|"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    return out


def rows_for(cls: type, prefix: str, skip: set[str] = frozenset()) -> list[tuple[str, str, str, str]]:
    """A table row for each field `cls` declares itself (except `skip`), in declaration order."""
    declared = [f for f in fields(cls) if f.name in cls.__dict__.get("__annotations__", {})]
    names = [f.name for f in declared if f.name not in skip]
    meaning, types = describe(cls, names), field_types(cls)
    rows = []
    for f in declared:
        if f.name in skip:
            continue
        option = code(f"--policy.{prefix}{f.name}")
        if not prefix and f.name in SEED_OPTIONS:
            option += f" {SEED_MARK}"
        default = cli_value(default_of(f))
        filled = preset_note(f.name) if not prefix else ""
        rows.append((option, code(types[f.name]), code(default) + filled, escape(meaning[f.name])))
    return rows


def preset_note(name: str) -> str:
    """For a field a preset fills when left at null: what it then becomes."""
    if name in conf.MODE_DEFAULTS:
        return " (filled by `mode`)"
    if name in ("iql_expectile", "iql_temperature"):
        return " (filled by `iql_preset`)"
    return ""


def first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


def render() -> str:
    config = conf.PiStarRECAPConfig
    groups = conf.GROUPS
    out = [
        "# Configuration options",
        "",
        f"<!-- Generated by `{COMMAND}` from src/lerobot_policy_pi_star_recap/configuration_pi_star_recap.py;",
        "     edit the comments there, not this file. tests/test_config_doc.py fails when it is stale. -->",
        "",
        "Every option of the `pi_star_recap` policy, as `lerobot-train` (and `lerobot-eval`) take it on the",
        "command line: `--policy.<option>=<value>` for a top-level option, `--policy.<group>.<option>=<value>`",
        f"for an option of one of the {len(groups)} groups:",
        ", ".join(f"[`{g}`](#{g}-group)" for g in groups) + ".",
        "Values are read as YAML: `true` / `false`, `null`, numbers, strings, JSON for dicts. In Python the",
        "same options are keyword arguments, a group's as its dataclass:",
        "",
        "```bash",
        "lerobot-train --policy.type=pi_star_recap --policy.iql_expectile=0.8 --policy.expert.width=256 ...",
        "```",
        "",
        "```python",
        "from lerobot_policy_pi_star_recap.configuration_pi_star_recap import ExpertOptions, PiStarRECAPConfig",
        "",
        "config = PiStarRECAPConfig(iql_expectile=0.8, expert=ExpertOptions(width=256))",
        "```",
        "",
        f"{SEED_MARK} marks the {len(SEED_OPTIONS)} options of the original specification; they, the method",
        "switches and the fields LeRobot itself reads stay top-level, the other knobs sit in groups. Two",
        "presets, `mode` and `iql_preset`, fill the options left at `null` ([Presets](#presets)); an explicit",
        "value always wins. Checkpoints saved with the earlier flat names load unchanged",
        "([Renamed options](#renamed-options)). Invalid values fail when the config is built, naming the",
        "option and what a valid value is.",
        "",
        f"This page is generated: after changing the config run `{COMMAND}`",
        f"(`{COMMAND} --check` tells whether it is up to date).",
        "",
        "## Top-level options",
        "",
        *table(rows_for(config, "", skip=set(groups))),
    ]
    for name, cls in groups.items():
        out += [
            "",
            f"## `{name}` group",
            "",
            escape(first_paragraph(cls.__doc__)) + f" (`{cls.__name__}`)",
            "",
            *table(rows_for(cls, f"{name}.")),
        ]
    inherited = [f for f in fields(config) if f.name not in config.__dict__["__annotations__"]]
    unknown = sorted({f.name for f in inherited} ^ set(LEROBOT_FIELDS))
    if unknown:
        raise ValueError(
            f"LEROBOT_FIELDS in {Path(__file__).name} does not match the fields PiStarRECAPConfig inherits "
            f"from LeRobot's PreTrainedConfig: {', '.join(unknown)}."
        )
    out += [
        "",
        "## Options LeRobot defines",
        "",
        "Inherited from LeRobot's `PreTrainedConfig`; `lerobot-train` sets most of them itself.",
        "",
        *table([lerobot_row(f) for f in inherited]),
        "",
        *presets(),
        "",
        *renamed(),
    ]
    return "\n".join(out) + "\n"


def lerobot_row(f: Field) -> tuple[str, str, str, str]:
    default = code(cli_value(default_of(f)))
    return code(f"--policy.{f.name}"), code(type_name(f.type)), default, escape(LEROBOT_FIELDS[f.name])


def presets() -> list[str]:
    modes = sorted({name for values in conf.MODES.values() for name in values} | set(conf.MODE_DEFAULTS))
    out = [
        "## Presets",
        "",
        "`mode` picks the method: it fills the options below that are left at `null` (`null` mode is",
        "`recap`). A checkpoint saves them unset, so fine-tuning it with another `--policy.mode` follows that",
        "mode; values given explicitly stay.",
        "",
        "| `mode` | " + " | ".join(f"`{n}`" for n in modes) + " |",
        "|---" * (len(modes) + 1) + "|",
    ]
    for mode, values in conf.MODES.items():
        filled = {**conf.MODE_DEFAULTS, **values}
        out.append(f"| `{mode}` | " + " | ".join(code(cli_value(filled[n])) for n in modes) + " |")
    out += [
        "",
        "`iql_preset` is the IQL tuning table: it fills `iql_expectile` and `iql_temperature` when they are",
        "left at `null` (a `null` preset is `balanced`).",
        "",
        "| `iql_preset` | `iql_expectile` | `iql_temperature` |",
        "|---|---|---|",
    ]
    out += [f"| `{name}` | `{tau}` | `{beta}` |" for name, (tau, beta) in conf.IQL_PRESETS.items()]
    return out


def renamed() -> list[str]:
    out = [
        "## Renamed options",
        "",
        "Options of the earlier flat layout and where they live now. A checkpoint's config.json with the old",
        "names loads through `PiStarRECAPConfig.from_pretrained`, which moves them; on the command line use",
        "the new name.",
        "",
        "| Old name | New name |",
        "|---|---|",
    ]
    out += [f"| `{old}` | `--policy.{new}` |" for old, new in conf.MOVED.items()]
    out += [
        "",
        "Options that became flags of the one command that read them (a config.json's value is dropped):",
        "",
        "| Old name | Now |",
        "|---|---|",
    ]
    out += [f"| `{old}` | `{new}` |" for old, new in conf.BECAME_FLAGS.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale, write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/configuration.md")
    args = parser.parse_args(argv)
    text = render()
    shown = args.output.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != text:
            what = "is missing" if current is None else "is stale"
            print(f"{shown} {what}: run `{COMMAND}` and commit the result.", file=sys.stderr)
            return 1
        print(f"{shown} is up to date.")
        return 0
    args.output.write_text(text)
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
