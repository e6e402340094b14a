"""The window grid, window extraction with reflection padding, and its exact inverse, the stitcher.

Grid arithmetic (``window_grid``): for an image of ``height × width`` pixels, a centre size ``c`` and a
margin ``m``, the centres tile the image from its top-left corner::

    rows = ceil(height / c)          cols = ceil(width / c)
    centre (i, j) covers image rows [i·c, (i+1)·c) and columns [j·c, (j+1)·c)
    window (i, j) covers rows [i·c - m, (i+1)·c + m) and columns [j·c - m, (j+1)·c + m)
    window side = c + 2m

1200 × 1200 with c = 240, m = 24 gives 5 × 5 = 25 windows of 288² starting at -24, 216, 456, 696, 936.
A 29 × 24 image with c = 240 is one window. Any pixel of a window outside the image (beyond the edges,
or beyond the last full centre when the image is not a multiple of ``c``) is *padding*: its value is the
image reflected about its edge without repeating the edge pixel (numpy's ``reflect`` mode, applied
repeatedly when the padding is wider than the image; a 1-pixel image repeats its pixel). Padding pixels
carry values so that convolutions see plausible context, but ``inside_mask`` marks them so that losses
and scores ignore them.

Stitching is the exact inverse: pasting each window's centre back at [i·c, (i+1)·c) and cropping to the
image reproduces the image (``stitch``, mode ``centre``). Mode ``weighted`` averages every window that
covers a pixel with weights 1 on its centre and falling linearly across its margin, which is also the
identity when the windows agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Window:
    """One window of the grid, in image coordinates (``top``/``left`` may be negative)."""

    row: int  # grid row i
    col: int  # grid column j
    top: int  # i·c - m
    left: int  # j·c - m
    size: int  # c + 2m


@dataclass(frozen=True)
class Grid:
    """The window grid of one image."""

    height: int
    width: int
    centre: int
    margin: int
    rows: int
    cols: int

    @property
    def size(self) -> int:
        return self.centre + 2 * self.margin

    @property
    def windows(self) -> list[Window]:
        """Row-major: (0, 0), (0, 1), …"""
        return [Window(i, j, i * self.centre - self.margin, j * self.centre - self.margin, self.size)
                for i in range(self.rows) for j in range(self.cols)]

    def __len__(self) -> int:
        return self.rows * self.cols


def window_grid(height: int, width: int, centre: int, margin: int) -> Grid:
    """The grid of windows covering a ``height × width`` image (arithmetic in the module docstring).

    Args:
      height, width: image size in pixels, each >= 1.
      centre: side of the pasted-back centre (``tiling.centre``), >= 1.
      margin: extra pixels on every side of the centre (``tiling.margin``), >= 0.

    Returns:
      The ``Grid``; ``grid.windows`` lists its windows row-major.
    """
    if height < 1 or width < 1:
        raise ValueError(f"expected an image of at least 1×1 pixel, got {height}×{width}")
    if centre < 1 or margin < 0:
        raise ValueError(f"expected centre >= 1 and margin >= 0, got {centre} and {margin}")
    return Grid(height, width, centre, margin, math.ceil(height / centre), math.ceil(width / centre))


def reflect_indices(start: int, size: int, length: int) -> np.ndarray:
    """Image indices of coordinates ``start .. start+size-1`` under repeated edge reflection.

    Matches ``np.pad(..., mode="reflect")`` (the edge pixel is not repeated); a 1-pixel axis maps every
    coordinate to 0.
    """
    coordinates = np.arange(start, start + size)
    if length == 1:
        return np.zeros(size, dtype=np.int64)
    period = 2 * (length - 1)
    folded = np.mod(coordinates, period)
    return np.where(folded < length, folded, period - folded).astype(np.int64)


def extract_window(stack: np.ndarray, window: Window) -> np.ndarray:
    """The window's pixels of an image or stack, with reflection padding.

    Args:
      stack: (..., height, width) — e.g. an int16 (months, height, width) zone stack.
      window: a window of the stack's grid.

    Returns:
      (..., size, size), same dtype; a copy.
    """
    height, width = stack.shape[-2:]
    rows = _index(reflect_indices(window.top, window.size, height))
    cols = _index(reflect_indices(window.left, window.size, width))
    # a slice is a view and an index array copies: index the slice first, so a copy holds window pixels only
    picked = stack[..., cols][..., rows, :] if isinstance(cols, slice) else stack[..., rows, :][..., cols]
    return picked.copy() if isinstance(rows, slice) and isinstance(cols, slice) else picked


def _index(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when ``indices`` are consecutive (an interior window), else the indices themselves."""
    if np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return slice(int(indices[0]), int(indices[0]) + len(indices))
    return indices


def inside_mask(window: Window, height: int, width: int) -> np.ndarray:
    """bool (size, size): True where the window pixel lies inside the image (not padding)."""
    rows = np.arange(window.top, window.top + window.size)
    cols = np.arange(window.left, window.left + window.size)
    return ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]


def window_weights(centre: int, margin: int) -> np.ndarray:
    """float64 (size, size): 1 on the centre, falling linearly to 1/(margin+1) at the window edge."""
    distance = np.maximum(np.maximum(margin - np.arange(centre + 2 * margin), 0),
                          np.maximum(np.arange(centre + 2 * margin) - (margin + centre - 1), 0))
    profile = 1 - distance / (margin + 1)
    return np.outer(profile, profile)


def stitch(grid: Grid, windows: Iterable[tuple[Window, np.ndarray]],
           mode: Literal["centre", "weighted"] = "centre", dtype: type = np.float32) -> np.ndarray:
    """Paste windows back into an image: the exact inverse of ``extract_window`` over the grid.

    Args:
      grid: the image's grid.
      windows: (window, values (..., size, size)) pairs covering every window of the grid.
      mode: ``centre`` pastes each centre (the original's way); ``weighted`` averages all windows that
        cover a pixel with ``window_weights`` (smooth seams).
      dtype: output dtype.

    Returns:
      (..., height, width).
    """
    output = None
    total_weight = None
    covered = np.zeros((grid.height, grid.width), dtype=bool)
    weights = window_weights(grid.centre, grid.margin) if mode == "weighted" else None
    for window, values in windows:
        values = np.asarray(values)
        if values.shape[-2:] != (grid.size, grid.size):
            raise ValueError(f"expected windows of {grid.size}×{grid.size}, got {values.shape[-2:]}")
        if output is None:
            output = np.zeros(values.shape[:-2] + (grid.height, grid.width), dtype=np.float64
                              if mode == "weighted" else dtype)
            total_weight = np.zeros((grid.height, grid.width), dtype=np.float64)
        if mode == "centre":
            top, left = window.top + grid.margin, window.left + grid.margin
            bottom, right = min(top + grid.centre, grid.height), min(left + grid.centre, grid.width)
            output[..., top:bottom, left:right] = values[..., grid.margin:grid.margin + bottom - top,
                                                         grid.margin:grid.margin + right - left]
            covered[top:bottom, left:right] = True
        elif mode == "weighted":
            top, left = max(window.top, 0), max(window.left, 0)
            bottom = min(window.top + grid.size, grid.height)
            right = min(window.left + grid.size, grid.width)
            local = (slice(top - window.top, bottom - window.top), slice(left - window.left,
                                                                         right - window.left))
            output[..., top:bottom, left:right] += values[(...,) + local] * weights[local]
            total_weight[top:bottom, left:right] += weights[local]
            covered[top:bottom, left:right] = True
        else:
            raise ValueError(f"expected stitch mode 'centre' or 'weighted', got {mode!r}")
    if output is None or not covered.all():
        raise ValueError(f"the windows do not cover the {grid.height}×{grid.width} image")
    if mode == "weighted":
        output = (output / total_weight).astype(dtype)
    return output
