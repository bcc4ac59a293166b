"""The panel's judges (bench/studies/judges.py) and its goals (bench/studies/panel.py): briefly
trained judges must tell real digits from a collapsed generator in their features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.studies.judge import fidelity, real_pairs
from bench.studies.judges import PANEL, held_out_accuracy, random_affine, train_panel_judge
from bench.studies.panel import GOALS, meets
from service.models import MNIST_NORMALISATION


# the fewest epochs that train each judge to its first 85% (the ResNet's one-cycle schedule needs
# a few epochs to settle): seconds, not the minutes of the full recipes
@pytest.mark.parametrize(("name", "epochs"), [("wide", 1), ("resnet", 3)])
def test_a_briefly_trained_judge_tells_real_digits_from_a_collapsed_generator(name, epochs):
    judge = train_panel_judge(dataclasses.replace(PANEL[name], epochs=epochs))
    assert held_out_accuracy(judge) > 0.85
    held_out, training = real_pairs()
    real = fidelity(judge, training, held_out)
    # a collapsed generator: the same training digit a thousand times
    collapsed = fidelity(judge, training[:1].expand(len(held_out), -1, -1, -1), held_out)
    assert real["precision"] > 0.6 and real["recall"] > 0.6
    assert collapsed["recall"] < 0.05
    assert collapsed["fid"] > 5 * real["fid"]


def test_random_affine_keeps_a_blank_image_blank_and_moves_a_dot():
    generator = torch.Generator().manual_seed(0)
    blank = MNIST_NORMALISATION.normalise(torch.zeros(4, 1, 28, 28))
    torch.testing.assert_close(random_affine(blank, generator), blank)
    dot = torch.zeros(64, 1, 28, 28)
    dot[:, :, 14, 14] = 1.0
    moved = MNIST_NORMALISATION.denormalise(
        random_affine(MNIST_NORMALISATION.normalise(dot), generator)
    )
    # the dot's centre of mass moves by at most 2 pixels of shift plus what a 12-degree
    # rotation and 10% scaling do to a point half a pixel from the centre, and not always by 0
    rows = torch.arange(28.0).view(1, 1, 28, 1)
    centre = (moved * rows).sum((1, 2, 3)) / moved.sum((1, 2, 3))
    assert (centre - 14).abs().max() < 3
    assert (centre - 14).abs().max() > 0.1


def _row(**changes) -> dict:
    good = {"precision": 0.9, "recall": 0.8, "fid_ratio": 1.2, "agreement_min": 0.97}
    good |= {"score": 9.2, "confident": 0.93}
    return {"project": dict(good), "wide": dict(good) | changes}


@pytest.mark.parametrize("goal", sorted(GOALS))
def test_a_row_fails_when_one_judge_misses_one_goal(goal):
    assert meets(_row(), 104.0)
    worse = GOALS[goal] * (1.1 if goal == "fid_ratio" else 0.9)
    assert not meets(_row(**{goal: worse}), 104.0)


def test_a_row_fails_on_the_bound_alone():
    assert not meets(_row(), 105.5)
