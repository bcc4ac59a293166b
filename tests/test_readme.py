"""The README's promises: its two commands exist, CI runs the test one, every setting is listed."""

import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(UNCONV_[A-Z_]+)` \| ([^|]+) \|", README, re.M))
    assert set(rows) == {f"UNCONV_{name.upper()}" for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, (int, float, str)) and not isinstance(default, bool):
            shown = rows[f"UNCONV_{name.upper()}"].strip().strip("`")
            assert (
                float(shown) == default if isinstance(default, (int, float)) else shown == default
            ), name


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one():
    commands = re.findall(r"^make (\w+)", README, re.M)
    assert commands == ["serve", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
