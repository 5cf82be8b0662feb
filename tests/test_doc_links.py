"""Every relative link in README.md and docs/*.md resolves: the target file exists, and a `#anchor` names
a heading of the target (GitHub's heading slugs). Files move (modules into subpackages, docs pages) and
headings get renamed; a broken link otherwise goes unnoticed until a reader clicks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, links reduced to their text, characters other than
    letters, digits, `_`, `-` and spaces dropped, spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in "_- ").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (repeated headings get `-1`, `-2`, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """`page: target (why)` (page relative to `root`) for each relative link of `page` that does not resolve."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append(f"{page.relative_to(root)}: {target} (no heading with anchor #{anchor})")
    return broken


def test_slug_matches_github():
    """The anchors this repository links to, spelled as GitHub generates them."""
    assert slug("1. Speed and memory against LeRobot's pi05") == "1-speed-and-memory-against-lerobots-pi05"
    assert slug("`pi-star-recap check`: before training") == "pi-star-recap-check-before-training"
    assert slug("2.2j The default demo: lossless video frames, 2026-12-04") == (
        "22j-the-default-demo-lossless-video-frames-2026-12-04"
    )


def test_link_finder_sees_links_and_skips_code(tmp_path):
    """Links across lines and images are found; links inside code are not; a bad anchor is named."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A heading\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "See [the other\npage](other.md#a-heading), ![img](missing.png), [web](https://x.org/a.md),\n"
        "[bad](other.md#not-a-heading) and [self](#top), `[code](nope.md)`.\n\n"
        "```bash\necho [x](nope.md)\n```\n\n# Top\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md: missing.png (no such file)",
        "page.md: other.md#not-a-heading (no heading with anchor #not-a-heading)",
    ]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    """Each page's relative links and images point at files that exist and headings that exist."""
    assert page.is_file()
    assert not broken_links(page), "broken links:\n" + "\n".join(broken_links(page))


def _readme_section(title: str) -> str:
    """The text of the README's `## <title>` section, up to the next `## ` heading."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.DOTALL | re.MULTILINE)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_readme_is_a_five_minute_read():
    """The README stays short: the detail belongs in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into a docs page"


def test_readme_indexes_every_docs_page():
    """The README's Docs section links every page of docs/."""
    index = _readme_section("Docs")
    missing = [
        page.name for page in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{page.name})" not in index
    ]
    assert not missing, f"README.md's Docs section does not list: {missing}"


def test_readme_two_commands_are_make_targets():
    """'The two commands' are `make demo` and `make test`, and the Makefile has both targets."""
    block = re.search(r"```bash\n(.*?)```", _readme_section("The two commands"), flags=re.DOTALL)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    targets = re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert {"demo", "test"} <= set(targets)
