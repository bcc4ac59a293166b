"""A figure lives in one generated place: the JSON a bench command writes (docs/benchmarks.json,
docs/training.json, ...), with the report rendered from it beside it. Hand-written prose in
README.md and docs/*.md cites a figure as a link, or as a marker the test resolves:

    <!-- figure: docs/training.json#vae.neg_elbo -->108.9 nats

The path is from the repository root, the key a dotted path into the JSON (a list by its
index). The figure after the marker must be the JSON's value rounded to the decimals shown; a
figure written with ``%`` is a fraction in the JSON (``97.80%`` is ``0.978``).
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- figure: (?P<path>[^#\s]+)#(?P<key>\S+) -->(?P<shown>-?[\d,]*\.?\d+%?)")
# a measured quantity written without a marker: a number and a unit of what the benches measure
BARE_FIGURE = re.compile(
    r"(?<![\w.,#>-])\d[\d,]*(?:\.\d+)?(?:[-\u2013]\d[\d,]*(?:\.\d+)?)?"  # 95.5-100 too
    r"(?:\s?%|\s?x\b|\s(?:nats|img/s|req/s|ms|s|MB|times)\b)"
)


def _lookup(data, key: str):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _matches(shown: str, value: float) -> bool:
    """Whether ``shown`` (as written in the doc) is ``value`` rounded as it is written."""
    percent = shown.endswith("%")
    number = shown.removesuffix("%").replace(",", "")
    decimals = len(number.partition(".")[2])
    return round(value * (100 if percent else 1), decimals) == float(number)


def _markers() -> list[tuple[str, re.Match]]:
    return [(doc.name, m) for doc in DOCS for m in MARKER.finditer(doc.read_text())]


def test_every_marked_figure_is_the_one_in_its_json():
    markers = _markers()
    assert markers, "no figure markers found: the pattern or the docs changed"
    wrong = []
    for doc, m in markers:
        data = json.loads((ROOT / m["path"]).read_text())
        value = _lookup(data, m["key"])
        if not _matches(m["shown"], value):
            wrong.append(f"{doc}: {m['shown']} for {m['path']}#{m['key']}, which is {value}")
    assert wrong == []


@pytest.mark.parametrize(
    ("shown", "value", "expected"),
    [("108.9", 108.94, True), ("108.9", 109.0, False), ("97.80%", 0.978, True),
     ("97.5%", 0.981, False), ("1,095", 1095.0, True), ("0.00132", 0.00132, True)],
)  # fmt: skip
def test_a_figure_matches_only_its_value_rounded_as_written(shown, value, expected):
    assert _matches(shown, value) is expected


def _prose(text: str) -> str:
    """``text`` without code blocks, inline code, links' targets and marked figures."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return MARKER.sub("", text)


def test_the_readme_quotes_no_measured_figure_without_its_source():
    bare = BARE_FIGURE.findall(_prose((ROOT / "README.md").read_text()))
    assert bare == [], "cite these from their JSON with a figure marker, or link the report"


def test_where_the_time_goes_now_quotes_no_measured_figure_without_its_source():
    text = (ROOT / "docs" / "performance.md").read_text()
    now = text.split("\n## ")[1]  # the first section; the dated log follows it
    assert now.startswith("Where the time goes now")
    assert BARE_FIGURE.findall(_prose(now)) == []


def test_the_reports_are_rendered_from_their_json(tmp_path):
    from bench.serving.report import write_report
    from bench.studies.training_quality import results_table

    training = json.loads((ROOT / "docs" / "training.json").read_text())
    assert results_table(training) in (ROOT / "docs" / "training.md").read_text()
    benchmarks = json.loads((ROOT / "docs" / "benchmarks.json").read_text())
    write_report(benchmarks, tmp_path / "benchmarks.md")
    assert (tmp_path / "benchmarks.md").read_text() == (ROOT / "docs" / "benchmarks.md").read_text()


# the hand-written docs; the others are rendered whole from their JSON by the command they name
HAND_WRITTEN = ["README.md", "client/README.md"]
HAND_WRITTEN += [f"docs/{name}.md" for name in ("settings", "errors", "protocol", "deployment")]
HAND_WRITTEN += [f"docs/{name}.md" for name in ("performance", "performance-log", "reliability")]
HAND_WRITTEN += ["docs/training.md"]
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# sections of a hand-written doc that a bench command renders from its JSON
RENDERED = {"docs/training.md": ("Generation",)}


@pytest.mark.parametrize("doc", HAND_WRITTEN)
def test_a_figure_outside_a_marker_is_in_a_dated_record(doc):
    """A measured figure written by hand either comes from a JSON (a marker) or sits in a
    section that dates it as a record: a date in its heading or first paragraphs."""
    undated = []
    for section in (ROOT / doc).read_text().split("\n## "):
        if section.startswith(RENDERED.get(doc, ())):
            continue
        bare = BARE_FIGURE.findall(_prose(section))
        opening = "\n\n".join(section.split("\n\n")[:3])
        if bare and not DATE.search(opening):
            undated.append(f"{section.splitlines()[0]}: {bare[:3]}")
    assert undated == []


def test_every_command_the_docs_give_names_a_module_that_exists():
    """``python -m X`` in the README and docs/*.md; the dated log keeps the commands of its day."""
    docs = [ROOT / "README.md", ROOT / "client" / "README.md", *(ROOT / "docs").glob("*.md")]
    docs = [doc for doc in docs if doc.name != "performance-log.md"]
    named = {
        (doc.name, m) for doc in docs for m in re.findall(r"python -m ([\w.]+)", doc.read_text())
    }
    assert len(named) > 10, "no commands found: the pattern or the docs changed"
    assert sorted((doc, m) for doc, m in named if importlib.util.find_spec(m) is None) == []
