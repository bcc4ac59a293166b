"""The judge's fidelity measures (bench/studies/judge.py) on hand-built point sets and
Gaussians whose precision, recall and Fréchet distance are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.studies.judge import (
    JUDGE_CONFIG,
    fid,
    frechet_distance,
    hidden_features,
    manifold_coverage,
    precision_recall,
)


def _line(xs) -> np.ndarray:
    return np.array([[x, 0.0] for x in xs])


# real: (0, 0) .. (9, 0); the radius of each ball (its 3rd nearest neighbour) is 3 at both ends
# (x = 0: neighbours at 1, 2, 3) and 2 elsewhere (x = 4: neighbours at 1, 1, 2).
REAL = _line(range(10))
# generated: five points half-way between real ones, x = 0.5 .. 4.5 (radii 3, 2, 2, 2, 3), and a
# unit square far away at x = 20, 21 (radii sqrt 2: neighbours at 1, 1, sqrt 2).
SQUARE = np.array([[20.0, 0.0], [20.0, 1.0], [21.0, 0.0], [21.0, 1.0]])
GENERATED = np.vstack([_line(np.arange(5) + 0.5), SQUARE])


def test_precision_is_the_share_of_generated_points_in_the_real_balls():
    # the five half-way points lie 0.5 from a real point; the square is 11+ from any real point,
    # beyond every real radius (at most 3): 5 of 9
    precision, _ = precision_recall(REAL, GENERATED)
    assert precision == pytest.approx(5 / 9)


def test_recall_is_the_share_of_real_points_in_the_generated_balls():
    # x = 0 .. 7 lie within 3 of (4.5, 0) or 0.5 of a half-way point; x = 8 is 3.5 from (4.5, 0)
    # (radius 3) and 4.5 from (3.5, 0) (radius 2); x = 9 further; the square's balls reach
    # x >= 20 - sqrt 2 only: 8 of 10
    _, recall = precision_recall(REAL, GENERATED)
    assert recall == pytest.approx(0.8)


def test_a_point_on_the_edge_of_a_ball_is_inside_and_k_sets_the_radius():
    # (0, 0)'s ball: radius 3 with k = 3, 1 with k = 1
    assert manifold_coverage(np.array([[-3.0, 0.0]]), REAL, k=3) == 1.0
    assert manifold_coverage(np.array([[-3.0, 0.0]]), REAL, k=1) == 0.0
    assert manifold_coverage(np.array([[-1.5, 0.0]]), REAL, k=1) == 0.0
    assert manifold_coverage(np.array([[-1.0, 0.0]]), REAL, k=1) == 1.0


def test_the_frechet_distance_of_one_dimensional_gaussians_is_the_means_and_deviations_apart():
    # W2^2 of N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2: 9 + 4
    distance = frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([4.0]), np.array([[16.0]])
    )
    assert distance == pytest.approx(13.0)


def test_the_frechet_distance_of_diagonal_gaussians_sums_over_dimensions():
    means = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    variances = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    distance = frechet_distance(means[0], np.diag(variances[0]), means[1], np.diag(variances[1]))
    assert distance == pytest.approx(expected)


def test_the_frechet_distance_of_full_covariances_is_scipys_matrix_square_root_formula():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 5))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)  # they do not commute
    mean_a, mean_b = rng.normal(size=(2, 5))
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_samples_approaches_the_distance_of_their_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal([0.0, 0.0], [1.0, 3.0], size=(200_000, 2))
    b = rng.normal([2.0, 0.0], [2.0, 1.0], size=(200_000, 2))
    # 4 + (1 - 2)^2 + (3 - 1)^2
    assert fid(a, b) == pytest.approx(9.0, abs=0.05)


def test_hidden_features_are_what_the_judges_last_layer_reads():
    torch.manual_seed(0)
    judge = JUDGE_CONFIG.build().eval()
    images = torch.rand(7, 1, 28, 28)
    features = hidden_features(judge, images)
    assert features.shape == (7, JUDGE_CONFIG.hidden_features)
    assert (features >= 0).all()  # after the ReLU
    last = judge.classifier[-1]
    logits = torch.from_numpy(features).float() @ last.weight.T + last.bias
    normalised = (images - 0.1307) / 0.3081
    torch.testing.assert_close(logits, judge(normalised), rtol=1e-4, atol=1e-4)
