"""Randomness that touches patient data, held by the site: the coordinator cannot know it.

DP-SGD's guarantee rests on two secrets: which rows each Poisson-sampled batch holds and the
Gaussian noise added to the clipped gradient sum. If the coordinator can replay them (they
used to be seeded from ``seed * 1000 + round``, values of its run config), it subtracts the
noise from the returned weights and reads the clipped gradients: with one-row batches, a
patient's row. So under DP both come from a ChaCha20 keystream (``cryptography``) keyed by
32 bytes of ``os.urandom`` drawn fresh for every round and never stored or sent.

Why hand-written: Opacus's ``secure_mode`` needs ``torchcsprng``, which does not exist for
this torch. Opacus's sampler and optimizer only accept a ``torch.Generator`` (Mersenne
Twister on CPU, not a CSPRNG), so this module supplies the two pieces that use randomness:
:class:`SitePoissonSampler` (the batch sampler) and :func:`use_site_noise` (the optimizer's
``add_noise``). The Gaussian samples follow Opacus's secure-mode recipe (the sum of four
standard normals over 2, arXiv:2107.10138 §5.1) against floating-point attacks on a single
Box-Muller draw; see docs/privacy.md for what remains (float32 rounding of the sum).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from torch.utils.data import Sampler

KEY_BYTES = 32
_NONCE = bytes(16)  # ChaCha20's counter+nonce block; each key is used for one round only
_MANTISSA = 2.0**-53


class SiteRandomness:
    """A keyed CSPRNG stream of uniforms, Gaussians and seeds.

    ``key=None`` (the only choice in training) draws a fresh key from ``os.urandom``; a given
    key makes the stream reproducible, which tests use to show what replayable randomness
    would let a coordinator do.
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = os.urandom(KEY_BYTES) if key is None else key
        if len(key) != KEY_BYTES:
            raise ValueError(f"site randomness needs a {KEY_BYTES}-byte key (got {len(key)})")
        self._stream = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
        self._zeros = b""  # plaintext for the keystream, kept: a sampler asks for one row count

    def _words(self, n: int) -> np.ndarray:
        if len(self._zeros) < 8 * n:
            self._zeros = bytes(8 * n)
        return np.frombuffer(self._stream.update(memoryview(self._zeros)[: 8 * n]), dtype="<u8")

    def uniform(self, n: int) -> np.ndarray:
        """``n`` float64 uniforms in [0, 1) from the top 53 bits of 64-bit words."""
        return _uniforms(self._words(n))

    def bernoulli(self, n: int, p: float) -> np.ndarray:
        """``uniform(n) < p`` (the same words, the same mask), compared as integers: a
        Poisson sampler draws one per row per step, and the float conversion cost as much."""
        return _below(self._words(n), p)

    def standard_normal(self, n: int) -> np.ndarray:
        """``n`` float64 N(0, 1) samples: each the sum of four Box-Muller normals over 2."""
        return self.standard_normals((n,))

    def standard_normals(self, sizes: tuple[int, ...]) -> np.ndarray:
        """``np.concatenate([self.standard_normal(n) for n in sizes])``: the same numbers, from
        one keystream call and one pass of the arithmetic (a DP step draws noise for each of
        its parameters, and the per-call overhead exceeded the work)."""
        first, second, low, high = _box_muller_layout(tuple(sizes))
        uniforms = self.uniform(4 * sum(sizes))
        u1, u2 = 1.0 - uniforms[first], uniforms[second]  # u1 in (0, 1]: log is finite
        radius = np.sqrt(-2.0 * np.log(u1))
        cos, sin = radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)
        return (cos[low] + cos[high] + sin[low] + sin[high]) / 2.0

    def gaussian_like(self, reference: torch.Tensor, std: float) -> torch.Tensor:
        """N(0, std²) noise shaped and typed like ``reference``."""
        return self.gaussians_like([reference], std)[0]

    def gaussians_like(self, references: list[torch.Tensor], std: float) -> list[torch.Tensor]:
        """``[self.gaussian_like(r, std) for r in references]``, the same noise, in one draw."""
        if std == 0:
            return [torch.zeros_like(r) for r in references]
        sizes = tuple(r.numel() for r in references)
        noise = self.standard_normals(sizes) * std
        starts = np.cumsum((0, *sizes))
        return [_as_tensor_like(noise[start:end], r) for start, end, r in zip(starts, starts[1:], references)]

    def seed(self) -> int:
        """A 63-bit seed for torch's own generator (dropout masks), from the stream."""
        return int(self._words(1)[0] >> np.uint64(1))


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


def _as_tensor_like(values: np.ndarray, reference: torch.Tensor) -> torch.Tensor:
    """float64 ``values`` cast to ``reference``'s dtype and shape (numpy's cast where it has
    the dtype: the same rounding as torch's, without its per-call overhead)."""
    dtype = _NUMPY_DTYPES.get(reference.dtype)
    if dtype is None:
        return torch.from_numpy(values).to(reference.dtype).reshape(reference.shape)
    return torch.from_numpy(values.astype(dtype).reshape(reference.shape))


@lru_cache(maxsize=64)
def _box_muller_layout(sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Where :meth:`SiteRandomness.standard_normals` finds each size's numbers. One size ``n``
    takes ``4n`` uniforms: ``u1`` the first ``2n``, ``u2`` the next ``2n``; its ``2n`` cosines
    and ``2n`` sines then sum as the rows of ``concat([cos, sin]).reshape(4, n)``, in order."""
    starts = np.cumsum((0, *sizes[:-1]), dtype=np.int64)
    first = np.concatenate([4 * s + np.arange(2 * n) for s, n in zip(starts, sizes, strict=True)])
    second = np.concatenate([4 * s + 2 * n + np.arange(2 * n) for s, n in zip(starts, sizes, strict=True)])
    low = np.concatenate([2 * s + np.arange(n) for s, n in zip(starts, sizes, strict=True)])
    high = np.concatenate([2 * s + n + np.arange(n) for s, n in zip(starts, sizes, strict=True)])
    return first, second, low, high


def _uniforms(words: np.ndarray) -> np.ndarray:
    return (words >> np.uint64(11)).astype("float64") * _MANTISSA


def _below(words: np.ndarray, p: float) -> np.ndarray:
    """``_uniforms(words) < p`` without floats. A uniform is ``k * 2**-53`` with
    ``k = word >> 11``; ``k * 2**-53 < p`` iff ``k < ceil(p * 2**53)`` (``p * 2**53`` is exact)
    iff ``word < ceil(p * 2**53) * 2**11``."""
    if p <= 0:
        return np.zeros(len(words), dtype=bool)
    bound = math.ceil(p * 2.0**53) << 11
    if bound >= 2**64:  # p > 1 - 2**-53: every uniform is below it
        return np.ones(len(words), dtype=bool)
    return words < np.uint64(bound)


class SitePoissonSampler(Sampler[list[int]]):
    """Opacus's ``UniformWithReplacementSampler`` with the site's CSPRNG: ``steps`` batches,
    each row in each batch independently with probability ``sample_rate`` (empty batches
    happen and are still DP steps)."""

    def __init__(
        self, *, num_samples: int, sample_rate: float, steps: int, randomness: SiteRandomness
    ) -> None:
        self.num_samples, self.sample_rate, self.steps = num_samples, sample_rate, steps
        self.randomness = randomness

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = self.randomness.bernoulli(self.num_samples, self.sample_rate)
            yield np.flatnonzero(mask).tolist()


def _site_add_noise(self) -> None:
    """Opacus's ``DPOptimizer.add_noise`` (same σ, clipping and bookkeeping), noise drawn
    from ``self.site_randomness`` instead of a ``torch.Generator``."""
    sigma = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier)
    for p in self.params:
        _check_processed_flag(p.summed_grad)
        noise = self.site_randomness.gaussian_like(p.summed_grad, sigma * self.max_grad_norm)
        p.grad = (p.summed_grad + noise).view_as(p)
        _mark_as_processed(p.summed_grad)


def use_site_noise(optimizer, randomness: SiteRandomness):
    """Make an Opacus DP optimizer draw its noise from ``randomness`` (in place, returned).

    The optimizer's class is swapped for a subclass overriding only ``add_noise``, so
    clipping, scaling and the accountant hook stay Opacus's own.
    """
    cls = type(optimizer)
    optimizer.__class__ = type(f"SiteNoise{cls.__name__}", (cls,), {"add_noise": _site_add_noise})
    optimizer.site_randomness = randomness
    return optimizer
