"""Advection (model/advection.py): the velocity a field moved at, and the field carried on at it."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import ndimage  # noqa: E402
from test_model import tiny_batch, tiny_config  # noqa: E402

import model as network  # noqa: E402
from model.advection import Advection, estimate_velocity, inside_bounds, shift_images  # noqa: E402
from phenocast.errors import PhenocastError  # noqa: E402


def moving_pair(velocity, noise: float = 0.3, size: int = 64, seed: int = 0):
    """A smooth unit-variance field and the same field moved by ``velocity`` (rows, columns), with noise:
    (current, previous), each (1, size, size, 1) float32."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(2 * size, 2 * size)), 5)
    field /= field.std()
    inner = slice(size // 2, size // 2 + size)
    previous = field[inner, inner]
    current = ndimage.shift(field, velocity, order=3, mode="wrap")[inner, inner]
    return tuple((image + noise * rng.normal(size=image.shape)).astype(np.float32)[None, ..., None]
                 for image in (current, previous))


@pytest.mark.parametrize("velocity", [(2.7, -1.9), (-3.5, 0.4), (0.0, 0.0)])
def test_the_velocity_of_a_moving_field_is_found(velocity):
    current, previous = moving_pair(velocity)
    found = np.asarray(estimate_velocity([previous, current], np.ones_like(current), 2.0))[0]
    np.testing.assert_allclose(found, velocity, atol=0.3)


def test_only_pixels_inside_the_zone_count():
    current, previous = moving_pair((1.5, 2.5), seed=1)
    inside = np.ones_like(current)
    inside[:, :, 40:] = 0  # reflection padding: here garbage that does not move
    garbage = np.random.default_rng(2).normal(size=current.shape).astype(np.float32) * 5
    current = np.where(inside > 0, current, garbage)
    previous = np.where(inside > 0, previous, garbage)
    found = np.asarray(estimate_velocity([previous, current], inside, 2.0))[0]
    np.testing.assert_allclose(found, (1.5, 2.5), atol=0.4)


def test_a_window_without_texture_does_not_move():
    flat = np.full((1, 32, 32, 1), 0.7, np.float32)
    found = np.asarray(estimate_velocity([flat, flat, flat], np.ones_like(flat), 2.0))
    np.testing.assert_allclose(found, 0.0, atol=1e-6)


def test_shift_images_moves_content_and_repeats_edges():
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    moved = np.asarray(shift_images(image, np.array([[1.0, 0.5]], np.float32)))[0, ..., 0]
    expected_rows = np.concatenate([image[0, :1, :, 0], image[0, :-1, :, 0]])  # down by one, first row repeated
    expected = np.concatenate([expected_rows[:, :1], (expected_rows[:, :-1] + expected_rows[:, 1:]) / 2], axis=1)
    np.testing.assert_allclose(moved, expected)
    np.testing.assert_allclose(np.asarray(shift_images(image, np.zeros((1, 2), np.float32))), image)


def test_shifting_within_bounds_repeats_their_edges():
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    bounds = np.array([[1.0, 4.0, 0.0, 2.0]], np.float32)  # rows 1-4, columns 0-2
    moved = np.asarray(shift_images(image, np.array([[0.0, -2.0]], np.float32), bounds))[0, ..., 0]
    # out[y, x] = image[clip(y, 1, 4), clip(x + 2, 0, 2)]
    expected = image[0, [1, 1, 2, 3, 4]][:, [2, 2, 2, 2, 2], 0]
    np.testing.assert_allclose(moved, expected)


def test_inside_bounds_are_the_rectangle_of_the_zone_in_each_window():
    weight = np.zeros((2, 8, 6, 1), np.float32)
    weight[0, 2:7, :4] = 1
    np.testing.assert_allclose(np.asarray(inside_bounds(weight)), [[2, 6, 0, 3], [0, 7, 0, 5]])


def test_what_moves_in_from_outside_the_zone_continues_its_edge():
    """A field moving 3 px a month to the right in a window whose 16 left columns are padding: the pixels
    just inside the zone's left edge are reached from the padding; they carry the edge's anomaly, which is
    closer to what comes (the field is smooth) than 0 or the padding's garbage."""
    current, previous = moving_pair((0.0, 3.0), noise=0.05, seed=3)
    after = moving_pair((0.0, 6.0), noise=0.0, seed=3)[0]  # the same field one month later
    inside = np.ones_like(current)
    inside[:, :, :16] = 0
    garbage = np.random.default_rng(4).normal(size=current.shape).astype(np.float32) * 5
    channels = [np.where(inside > 0, image, garbage) for image in (previous, current)] + [inside]
    moved, zero = (np.asarray(Advection([0, 1], 2, 1, 2.0, edge)(np.concatenate(channels, axis=-1)))[0, :, :, 0]
                   for edge in ("nearest", "zero"))
    strip = after[0, :, 16:19, 0]  # reached from columns 13-15 at lead 1
    edge = np.asarray(current)[0, :, 16:17, 0]
    np.testing.assert_allclose(moved[:, 16:19], np.broadcast_to(edge, strip.shape), atol=0.35)
    assert np.sqrt(np.mean((moved[:, 16:19] - strip) ** 2)) < 0.7 * np.sqrt(np.mean(strip ** 2))
    assert np.all(moved[:, :16] == 0)
    # model.advection_edge: zero moves in the padding's 0 instead; inside, away from the edge, the same field
    np.testing.assert_allclose(zero[:, 16:18], 0.0, atol=1e-6)
    np.testing.assert_allclose(zero[:, 24:], moved[:, 24:], atol=1e-6)
    with pytest.raises(ValueError, match="expected one of nearest, zero, found 'mirror'"):
        Advection([0, 1], 2, 1, 2.0, "mirror")


def test_the_network_with_advection_is_still_its_base_untrained(tmp_path):
    config = tiny_config("model.advection=true")
    built = network.build_model(config)
    x, _ = tiny_batch(config)
    base = x[..., slice(*config.channel_slice("base"))]
    np.testing.assert_allclose(np.asarray(built(x)), base, atol=1e-7)
    assert built.get_layer("advection").compute_dtype == "float32"
    built.save(tmp_path / "advection.keras")
    again = network.load_model(tmp_path / "advection.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(built(x)), atol=1e-7)


def test_advection_needs_the_origin_and_the_month_before():
    with pytest.raises(PhenocastError, match="sequence.offsets must hold 0 and -1"):
        tiny_config("model.advection=true", "sequence.offsets=[0, -2]")
