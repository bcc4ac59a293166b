"""The README's promises: its two commands exist, CI runs the test one, its settings table is
exactly ``Settings`` (every variable, with its default and its meaning) and its table of error
codes is exactly ``ERRORS`` (every code, with its status and its meaning)."""

import re
from pathlib import Path

from pydantic import SecretStr

from service.api.errors import ERRORS
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _shown(default) -> str:
    """A default as the README writes it: in backticks, or the words ``unset`` and ``empty``."""
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
    rows = re.findall(r"^\| `UNCONV_([A-Z_]+)` \| ([^|]+) \| (.+) \|$", README, re.M)
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
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", README, re.M)
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


def test_no_readme_paragraph_or_list_item_is_over_80_words():
    blocks = _blocks(README)
    assert len(blocks) > 20, "no paragraphs found: the pattern or the README changed"
    long = [f"{len(b.split())} words: {b[:60]}..." for b in blocks if len(b.split()) > 80]
    assert long == []
