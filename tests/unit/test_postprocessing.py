from __future__ import annotations

import numpy as np

from amaas.artifact.tasks.classification import softmax, top_k

LABELS = ["cat", "dog", "bird", "fish"]


def test_softmax_rows_sum_to_one_even_for_huge_logits() -> None:
    probabilities = softmax(np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]]))

    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[1], 1 / 3)


def test_top_k_ranks_labels_by_score() -> None:
    logits = np.array([[0.1, 3.0, 2.0, -1.0]])

    (ranked,) = top_k(logits, LABELS, 2)

    assert [p.label for p in ranked] == ["dog", "bird"]
    assert [p.index for p in ranked] == [1, 2]
    assert ranked[0].score > ranked[1].score
    assert abs(sum(p.score for p in top_k(logits, LABELS, 4)[0]) - 1.0) < 1e-9


def test_top_k_larger_than_class_count_returns_every_class() -> None:
    (ranked,) = top_k(np.zeros((1, 4)), LABELS, 50)

    assert sorted(p.label for p in ranked) == sorted(LABELS)


def test_ties_break_by_lower_index_so_results_are_stable() -> None:
    (ranked,) = top_k(np.zeros((1, 4)), LABELS, 4)

    assert [p.index for p in ranked] == [0, 1, 2, 3]


def test_each_row_of_a_batch_is_ranked_separately() -> None:
    logits = np.array([[5.0, 0, 0, 0], [0, 0, 0, 5.0]])

    first, second = top_k(logits, LABELS, 1)

    assert first[0].label == "cat"
    assert second[0].label == "fish"


def test_softmax_of_a_broken_models_rows_is_nan_without_warnings() -> None:
    # pytest turns warnings into errors here, as a numpy RuntimeWarning would have failed the request
    logits = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, 1.0], [-np.inf, 2.0]])

    probabilities = softmax(logits)

    assert np.isnan(probabilities[:3]).any(axis=1).all()
    np.testing.assert_array_equal(probabilities[3], [0.0, 1.0])
