from __future__ import annotations

import numpy as np

from amaas_export.data import synthetic


def test_same_seed_gives_identical_images() -> None:
    a = synthetic.generate(40, seed=3)
    b = synthetic.generate(40, seed=3)

    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_seed_and_split_change_the_images() -> None:
    base = synthetic.generate(20, seed=0).images

    assert not np.array_equal(base, synthetic.generate(20, seed=1).images)
    assert not np.array_equal(base, synthetic.generate(20, seed=0, split="test").images)


def test_images_have_cifar_geometry_and_balanced_classes() -> None:
    data = synthetic.generate(100, seed=0)

    assert data.images.shape == (100, 32, 32, 3)
    assert data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [10] * len(synthetic.LABELS)


def test_images_of_one_class_vary() -> None:
    data = synthetic.generate(200, seed=0)
    stars = data.images[data.labels == synthetic.LABELS.index("star")].astype(np.float32)

    # colour, size, position, rotation and noise all vary: no two stars are near-identical
    distances = [np.abs(stars[i] - stars[j]).mean() for i in range(5) for j in range(i + 1, 5)]
    assert min(distances) > 10


def test_a_named_sample_is_reproducible() -> None:
    first = np.asarray(synthetic.sample("heart", variant=4))

    np.testing.assert_array_equal(first, np.asarray(synthetic.sample("heart", variant=4)))
    assert first.shape == (32, 32, 3)
