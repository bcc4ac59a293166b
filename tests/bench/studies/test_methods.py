"""bench.studies.methods: its measures against hand-computed values, and docs/methods.md
rendered from docs/methods.json."""

import json
from pathlib import Path

import pytest
import torch

from bench.studies.methods import cosine, render, stroke_share

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_stroke_share_is_the_magnitude_on_the_strokes_over_all_of_it():
    projection = torch.tensor([[[[3.0, -1.0], [0.0, -4.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    strokes = torch.tensor([[[[True, False], [False, True]]], [[[True, True], [True, True]]]])
    # (3 + 4) / (3 + 1 + 4); an all-zero projection has nothing on the strokes
    assert stroke_share(projection, strokes).tolist() == pytest.approx([7 / 8, 0.0])


def test_cosine_of_each_pair():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [-3.0, -3.0]])
    assert cosine(a, b).tolist() == pytest.approx([0.0, -1.0])


def test_the_doc_is_rendered_from_its_json():
    data = json.loads((DOCS / "methods.json").read_text())
    assert (DOCS / "methods.md").read_text() == render(data)
    assert (DOCS / data["picture"]).is_file()
