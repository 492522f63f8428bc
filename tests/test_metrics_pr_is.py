"""Precision/recall (k-NN manifolds, k = 3) and Inception Score on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidance_repro.errors import ReproError
from guidance_repro.metrics.inception_score import inception_score
from guidance_repro.metrics.precision_recall import knn_radii, precision_recall


def test_identical_sets_have_precision_and_recall_one():
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    assert precision_recall(x, x.copy(), batch_size=64) == (1.0, 1.0)


def test_far_apart_sets_have_precision_and_recall_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_hand_checked_one_dimensional_case():
    # real = 0..7: 3rd-neighbour radii 3,2,2,2,2,2,2,3 -> real manifold covers [-3, 10].
    # fake = 6..10: radii 3,2,2,2,3 -> fake manifold covers [3, 13].
    # precision = fakes in [-3, 10] = 5/5; recall = reals in [3, 13] = {3,4,5,6,7} = 5/8.
    real = np.arange(8, dtype=np.float64)[:, None]
    fake = np.arange(6, 11, dtype=np.float64)[:, None]
    radii = knn_radii(torch.as_tensor(real), k=3)
    np.testing.assert_array_equal(radii.numpy(), [3, 2, 2, 2, 2, 2, 2, 3])
    p, r = precision_recall(real, fake, k=3, dtype=torch.float64, batch_size=3)
    assert (p, r) == (1.0, 0.625)
    # swapping the roles swaps the numbers
    assert precision_recall(fake, real, k=3, dtype=torch.float64) == (0.625, 1.0)


def test_precision_recall_errors():
    with pytest.raises(ReproError, match="feature shapes"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ReproError, match="more than k"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_is_of_confident_uniform_predictions_is_number_of_classes():
    labels = np.repeat(np.arange(10), 100)
    logits = 60.0 * np.eye(10)[labels]
    mean, std, splits = inception_score(logits)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == 0.0 and splits == 1


def test_is_of_identical_predictions_is_one():
    logits = np.tile(np.random.default_rng(2).normal(size=(1, 7)), (500, 1))
    assert inception_score(logits)[0] == pytest.approx(1.0, abs=1e-12)


def test_is_matches_entropy_form_and_splits_like_adm():
    # IS = exp(H(mean p) - mean H(p)) per split; ADM splits into chunks of 5000 (last shorter).
    logits = np.random.default_rng(3).normal(size=(12_000, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    def entropy_form(q):
        m = q.mean(0)
        return np.exp(-(m * np.log(m)).sum() + (q * np.log(q)).sum(1).mean())

    parts = [entropy_form(p[i:i + 5000]) for i in (0, 5000, 10_000)]
    mean, std, splits = inception_score(logits, split_size=5000)
    assert splits == 3
    assert mean == pytest.approx(np.mean(parts), rel=1e-10)
    assert std == pytest.approx(np.std(parts), rel=1e-8)


def test_is_errors():
    with pytest.raises(ReproError, match="logits"):
        inception_score(np.zeros((0, 3)))
    with pytest.raises(ReproError, match="split size"):
        inception_score(np.zeros((4, 3)), split_size=0)


def test_precision_recall_with_given_real_radii():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(40, 4)), rng.normal(0.3, 1.0, size=(30, 4))
    radii = knn_radii(torch.as_tensor(real, dtype=torch.float32)).numpy()
    assert precision_recall(real, fake, real_radii=radii) == precision_recall(real, fake)
    with pytest.raises(ReproError, match="radii"):
        precision_recall(real, fake, real_radii=radii[:-1])
