"""JAFFE augmentation (§4.1.1): mirror, ±5° rotations, Gaussian noise of variance 0.01."""

import numpy as np
import pytest

from data_helpers import random_image
from dam_cnn_tf.data.augment import AUGMENTATIONS, augment_dataset, augment_images, mirror, rotate
from dam_cnn_tf.data.samples import Dataset, Sample


def test_five_images_per_original_213_to_1065():
    images = np.random.default_rng(0).integers(0, 256, size=(213, 6, 6), dtype=np.uint8)
    out = augment_images(images, seed=0)
    assert out.images.shape == (1065, 6, 6)
    assert list(out.kind[:5]) == list(AUGMENTATIONS)
    np.testing.assert_array_equal(out.source, np.repeat(np.arange(213), 5))
    np.testing.assert_array_equal(out.images[out.kind == "original"], images)


def test_mirror_is_an_exact_flip():
    image = random_image(1, (7, 9, 3))
    flipped = augment_images(image[None], seed=0).images[1]
    for col in range(9):
        np.testing.assert_array_equal(flipped[:, col], image[:, 8 - col])
    np.testing.assert_array_equal(mirror(mirror(image)), image)


def _bilinear(image, y, x):
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    patch = image[y0:y0 + 2, x0:x0 + 2].astype(float)
    return (patch[0, 0] * (1 - fy) * (1 - fx) + patch[0, 1] * (1 - fy) * fx
            + patch[1, 0] * fy * (1 - fx) + patch[1, 1] * fy * fx)


@pytest.mark.parametrize("degrees", [5.0, -5.0])
def test_rotation_about_the_centre_matches_numpy(degrees):
    # A smooth image so that interpolation error stays small.
    yy, xx = np.mgrid[0:41, 0:41]
    image = (127 + 60 * np.sin(xx / 5.0) + 60 * np.cos(yy / 7.0)).astype(np.uint8)
    rotated = rotate(image, degrees)
    centre = 20.0
    assert rotated[20, 20] == image[20, 20]  # the centre pixel stays where it is
    theta = np.deg2rad(degrees)  # positive: counter-clockwise on screen (y axis pointing down)
    for y, x in [(10, 12), (28, 31), (20, 5), (33, 18)]:
        # Inverse map: output (x, y) comes from the source rotated back by theta.
        dx, dy = x - centre, y - centre
        sx = centre + np.cos(theta) * dx - np.sin(theta) * dy
        sy = centre + np.sin(theta) * dx + np.cos(theta) * dy
        assert abs(float(rotated[y, x]) - _bilinear(image, sy, sx)) <= 2.0


def test_noise_is_zero_mean_variance_001_and_seeded():
    image = np.full((300, 300), 128, np.uint8)
    out = augment_images(image[None], seed=3)
    noisy = out.images[4].astype(float) / 255.0
    diff = noisy - 128 / 255.0
    assert abs(diff.mean()) < 0.002
    assert abs(diff.var() - 0.01) < 0.0005
    again = augment_images(image[None], seed=3).images[4]
    other = augment_images(image[None], seed=4).images[4]
    np.testing.assert_array_equal(out.images[4], again)
    assert (other != again).any()


def test_augment_dataset_keeps_labels_and_sources():
    samples = [Sample(f"f{i}.png", label, subject=f"s{i}", image=random_image(i, (8, 8, 3)))
               for i, label in enumerate(["anger", "happiness"])]
    data = Dataset("jaffe", samples, ("anger", "happiness"))
    out = augment_dataset(data, seed=0)
    assert len(out) == 10 and out.classes == data.classes
    assert [s.label for s in out.samples] == ["anger"] * 5 + ["happiness"] * 5
    assert [s.subject for s in out.samples] == ["s0"] * 5 + ["s1"] * 5
    assert {s.extras["source"] for s in out.samples[:5]} == {"f0.png"}
    assert [s.extras["augmentation"] for s in out.samples[:5]] == list(AUGMENTATIONS)
    with pytest.raises(ValueError, match="in-memory"):
        augment_dataset(Dataset("x", [Sample("a.png", "anger")], ("anger",)), seed=0)
