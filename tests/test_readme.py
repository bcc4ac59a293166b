"""The README's promises: its two commands exist, CI runs the test one, and it reads in short
paragraphs; the settings table of docs/settings.md is exactly ``Settings`` (every variable, with
its default and its meaning) and the table of docs/errors.md is exactly ``ERRORS`` (every code,
with its status and its meaning)."""

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.api.errors import ERRORS
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SETTINGS = (ROOT / "docs" / "settings.md").read_text()
ERRORS_DOC = (ROOT / "docs" / "errors.md").read_text()
# what moved from the README to docs/<name>.md
MOVED = ("settings", "errors", "protocol", "deployment")


def _shown(default) -> str:
    """A default as docs/settings.md shows it: in backticks, or the words ``unset``, ``empty``."""
    if default is None:
        return "unset"
    if isinstance(default, list):
        return f"`{','.join(default)}`" if default else "empty"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    assert not isinstance(default, SecretStr), "a secret has no default to show"
    return f"`{default}`"


def test_the_settings_table_is_settings_with_every_default_and_meaning():
    rows = re.findall(r"^\| `UNCONV_([A-Z_]+)` \| ([^|]+) \| (.+) \|$", SETTINGS, re.M)
    table = {name.lower(): (default.strip(), meaning.strip()) for name, default, meaning in rows}
    assert list(table) == list(Settings.model_fields)  # every one, in the same order
    for name, field in Settings.model_fields.items():
        assert table[name] == (_shown(field.default), field.description), name


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    commands = re.findall(r"^make (\w+)", README, re.M)
    assert commands == ["serve", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_error_table_is_errors_with_every_status_and_meaning():
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", ERRORS_DOC, re.M)
    assert [code for code, _, _ in rows] == [code.value for code in ERRORS]  # same order
    for code, status, meaning in rows:
        kind = ERRORS[code]
        assert (int(status), meaning) == (kind.status, kind.meaning), code


def _blocks(text: str) -> list[str]:
    """The README's prose paragraphs and list items, without code blocks, tables, headings and
    ``<!-- ... -->`` markers."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    # a code block inside a list item leaves the item one block
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```[ \t]*\n", "", text, flags=re.S | re.M)
    blocks, lines = [], []
    for line in [*text.splitlines(), ""]:
        starts_item = re.match(r"\s*(?:[-*+]|\d+\.)\s", line)
        if not line.strip() or line.lstrip().startswith(("|", "#")) or starts_item:
            if lines:
                blocks.append(" ".join(lines))
            lines = [line] if starts_item else []
        else:
            lines.append(line)
    return blocks


@pytest.mark.parametrize("doc", ["README.md", *(f"docs/{name}.md" for name in MOVED)])
def test_no_paragraph_or_list_item_is_over_80_words(doc):
    blocks = _blocks((ROOT / doc).read_text())
    assert len(blocks) > 2, "no paragraphs found: the pattern or the document changed"
    long = [f"{len(b.split())} words: {b[:60]}..." for b in blocks if len(b.split()) > 80]
    assert long == []


def test_the_readme_is_short_and_in_a_newcomers_order():
    assert len(README.splitlines()) < 250
    headings = re.findall(r"^## (.+)$", README, re.M)
    order = ["Two commands", "Using it", "Architecture", "Further reading"]
    assert [h for h in headings if h in order] == order  # other sections may sit between
    assert (headings[0], headings[-1]) == (order[0], order[-1])
    for name in MOVED:  # the details it leaves to docs/, each linked from it
        assert f"(docs/{name}.md)" in README, name


def test_every_relative_link_in_the_docs_resolves():
    docs = [ROOT / "README.md", ROOT / "client" / "README.md", *(ROOT / "docs").glob("*.md")]
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []
