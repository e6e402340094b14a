"""The window grid: parametrised edge cases, reflection padding, and stitching as its exact inverse."""

from __future__ import annotations

import numpy as np
import pytest

from phenocast.tiling import extract_window, inside_mask, reflect_indices, stitch, window_grid, window_weights


def test_competition_grid():
    grid = window_grid(1200, 1200, 240, 24)
    assert (grid.rows, grid.cols, len(grid), grid.size) == (5, 5, 25, 288)
    assert [w.top for w in grid.windows[::5]] == [-24, 216, 456, 696, 936]
    assert [w.left for w in grid.windows[:5]] == [-24, 216, 456, 696, 936]


@pytest.mark.parametrize("height, width, centre, margin, rows, cols", [
    (1200, 1200, 240, 24, 5, 5),
    (29, 24, 240, 24, 1, 1),  # a small zone is one padded window
    (30, 43, 16, 8, 2, 3),
    (1, 1, 4, 3, 1, 1),  # a single pixel
    (1, 7, 4, 0, 1, 2),  # no margin
    (48, 48, 48, 8, 1, 1),
    (49, 48, 48, 8, 2, 1),  # one pixel past a multiple of the centre
])
def test_grid_shapes(height, width, centre, margin, rows, cols):
    grid = window_grid(height, width, centre, margin)
    assert (grid.rows, grid.cols) == (rows, cols)
    assert all(w.size == centre + 2 * margin for w in grid.windows)
    assert [(w.row, w.col) for w in grid.windows] == [(i, j) for i in range(rows) for j in range(cols)]


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0)])
def test_grid_rejects_empty_images(height, width):
    with pytest.raises(ValueError, match="at least 1×1"):
        window_grid(height, width, 8, 2)


@pytest.mark.parametrize("start, size, length", [(-24, 288, 1200), (936, 288, 1200), (-24, 288, 29),
                                                 (-7, 30, 5), (-3, 10, 2), (0, 5, 1), (-50, 120, 7)])
def test_reflection_matches_numpy_reflect_padding(start, size, length):
    line = np.arange(length)
    pad_before = max(0, -start)
    pad_after = max(0, start + size - length)
    padded = np.pad(line, (pad_before, pad_after), mode="reflect" if length > 1 else "edge")
    expected = padded[start + pad_before:start + pad_before + size]
    np.testing.assert_array_equal(line[reflect_indices(start, size, length)], expected)


@pytest.mark.parametrize("height, width, centre, margin", [
    (1200, 1200, 240, 24), (29, 24, 240, 24), (30, 43, 16, 8), (30, 43, 16, 0), (1, 1, 4, 3),
    (97, 50, 32, 16), (64, 64, 48, 8), (20, 20, 8, 40),  # margin wider than the image
])
@pytest.mark.parametrize("mode", ["centre", "weighted"])
def test_tiling_then_stitching_is_the_identity(height, width, centre, margin, mode):
    rng = np.random.default_rng(height * 1000 + width)
    image = rng.integers(-3000, 10000, size=(3, height, width)).astype(np.int16)  # (months, h, w)
    grid = window_grid(height, width, centre, margin)
    windows = [(window, extract_window(image, window)) for window in grid.windows]
    for window, values in windows:
        assert values.shape == (3, grid.size, grid.size) and values.dtype == np.int16
        inside = inside_mask(window, height, width)
        # every inside pixel equals the image pixel at the same place
        rows = np.arange(window.top, window.top + grid.size)
        cols = np.arange(window.left, window.left + grid.size)
        r, c = np.nonzero(inside)
        np.testing.assert_array_equal(values[:, r, c], image[:, rows[r], cols[c]])
    restored = stitch(grid, windows, mode=mode, dtype=np.float64)
    np.testing.assert_allclose(restored, image, rtol=0, atol=1e-9 if mode == "weighted" else 0)


def test_padding_is_marked_outside_and_values_reflect():
    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    grid = window_grid(3, 4, 4, 1)
    (window,) = grid.windows
    values = extract_window(image, window)
    np.testing.assert_array_equal(values, np.pad(image, ((1, 2), (1, 1)), mode="reflect"))
    inside = inside_mask(window, 3, 4)
    assert inside.sum() == 12 and not inside[0].any() and not inside[:, 0].any() and not inside[4].any()


def test_weighted_stitch_favours_centres():
    weights = window_weights(4, 2)
    assert weights.shape == (8, 8)
    assert (weights[2:6, 2:6] == 1).all() and weights[0, 0] == pytest.approx((1 / 3) ** 2)
    grid = window_grid(8, 8, 4, 2)
    # windows that disagree: each says its own index; a centre pixel far from seams keeps its window's
    windows = [(w, np.full((grid.size, grid.size), float(k))) for k, w in enumerate(grid.windows)]
    blended = stitch(grid, windows, mode="weighted")
    assert blended[0, 0] == 0 and blended[7, 7] == 3
    assert blended[1, 4] == pytest.approx(0.6)  # by the seam of windows 0 (weight 2/3) and 1 (weight 1)


def test_stitch_rejects_incomplete_or_wrong_windows():
    grid = window_grid(8, 8, 4, 2)
    with pytest.raises(ValueError, match="do not cover"):
        stitch(grid, [(grid.windows[0], np.zeros((8, 8)))])
    with pytest.raises(ValueError, match="expected windows of 8×8"):
        stitch(grid, [(grid.windows[0], np.zeros((6, 6)))])
