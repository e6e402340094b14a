"""Random fields of the synthetic world: stationary Gaussian fields on a periodic grid, drawn, shifted and
averaged over random shifts in the Fourier domain, and random blobs (fill clusters).

A field of correlation length ``scale`` has the Matérn-like power spectrum (1 + |k|²·scale²)^−(ν+1)
(ν = ``smoothness``), normalised to unit variance. Shifting a field by d pixels multiplies its spectrum
by exp(−i k·d); the mean of the shifted field over a Gaussian shift d ~ N(μ, s²·I) multiplies it by
exp(−i k·μ)·exp(−½ s²|k|²) (the characteristic function of d), exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


class SpectralGrid:
    """Stationary Gaussian fields on a periodic grid of side ``period`` ≥ size + 2·pad around the zone.

    Args:
      size: the zone's pixels per side (the fields returned are (size, size)).
      pad: pixels of padding on every side before the grid wraps around.
    """

    def __init__(self, size: int, pad: int):
        self.size = size
        self.period = scipy.fft.next_fast_len(size + 2 * pad, real=True)
        self.wavenumber_y = (2 * np.pi * np.fft.fftfreq(self.period))[:, None]  # (period, 1) rad/pixel
        self.wavenumber_x = (2 * np.pi * np.fft.rfftfreq(self.period))[None, :]  # (1, period//2 + 1)
        self.wavenumber_squared = self.wavenumber_y ** 2 + self.wavenumber_x ** 2  # (period, period//2 + 1)
        self._amplitudes: dict[tuple[float, float], np.ndarray] = {}

    def amplitude(self, scale: float, smoothness: float) -> np.ndarray:
        """√(power spectrum) of a Matérn-like field of correlation length ``scale``, for unit variance."""
        key = (scale, smoothness)
        if key not in self._amplitudes:
            power = (1 + self.wavenumber_squared * scale ** 2) ** (-(smoothness + 1))
            columns = np.full(power.shape[1], 2.0)  # the half-plane stands for both halves, except
            columns[0] = 1.0  # the zero and (even period) Nyquist columns
            if self.period % 2 == 0:
                columns[-1] = 1.0
            variance = float((power * columns).sum()) / self.period ** 2  # Parseval, unit white noise
            self._amplitudes[key] = np.sqrt(power / variance).astype(np.float32)
        return self._amplitudes[key]

    def spectrum(self, rng: np.random.Generator, scale: float, smoothness: float) -> np.ndarray:
        """The rfft2 of a new unit-variance field: complex64 (period, period//2 + 1)."""
        white = rng.standard_normal((self.period, self.period), dtype=np.float32)
        return scipy.fft.rfft2(white) * self.amplitude(scale, smoothness)

    def to_field(self, spectrum: np.ndarray) -> np.ndarray:
        """The zone part of the field with this spectrum: float32 (size, size)."""
        full = scipy.fft.irfft2(spectrum, s=(self.period, self.period))
        return np.ascontiguousarray(full[: self.size, : self.size], dtype=np.float32)

    def field(self, rng: np.random.Generator, scale: float, smoothness: float) -> np.ndarray:
        """A new unit-variance field on the zone: float32 (size, size)."""
        return self.to_field(self.spectrum(rng, scale, smoothness))

    def shift(self, displacement: tuple[float, float], spread: float = 0.0) -> np.ndarray:
        """The Fourier factor that moves a field by ``displacement`` (rows, columns) pixels, or, with
        ``spread`` s > 0, its mean over displacements N(displacement, s²·I): exp(−i k·μ − ½ s²|k|²).

        Returns:
          complex64 (period, period//2 + 1).
        """
        # separable: the product of a factor per row wavenumber and one per column wavenumber
        rows = np.exp(-1j * self.wavenumber_y * displacement[0] - 0.5 * spread ** 2 * self.wavenumber_y ** 2)
        columns = np.exp(-1j * self.wavenumber_x * displacement[1] - 0.5 * spread ** 2 * self.wavenumber_x ** 2)
        return rows.astype(np.complex64) * columns.astype(np.complex64)  # (period, period//2 + 1)


def clusters(rng: np.random.Generator, size: int, count: int, steps: tuple[int, int]) -> np.ndarray:
    """A (size, size) mask of ``count`` random connected blobs, each a random walk of ``steps`` steps
    (uniform in [low, high))."""
    mask = np.zeros((size, size), dtype=bool)
    moves = ((0, 1), (1, 0), (0, -1), (-1, 0))
    for _ in range(count):
        row, column = int(rng.integers(size)), int(rng.integers(size))
        for move in rng.integers(0, 4, size=int(rng.integers(*steps))):
            mask[row, column] = True
            row = min(size - 1, max(0, row + moves[move][0]))
            column = min(size - 1, max(0, column + moves[move][1]))
    return mask
