"""Faster site randomness, same numbers: the Poisson sampler compares integers (the rows of
``uniform < q``), and several tensors' Gaussian noise comes from one draw (bit for bit the
draws one by one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.site_randomness import SitePoissonSampler, SiteRandomness, _below, _uniforms


@pytest.mark.parametrize("p", [0.0, 2.0**-60, 1 / 196, 0.1, 1 / 3, 0.5, 1 - 2.0**-53, 1.0, 1.5])
def test_integer_comparison_is_the_float_comparison_at_every_boundary(p):
    bound = int(np.ceil(p * 2.0**53)) << 11
    near = [bound + d for d in (-2049, -2048, -1, 0, 1, 2047, 2048)]
    words = np.array([w for w in near if 0 <= w < 2**64] + [0, 1, 2**64 - 1], dtype=np.uint64)
    random = np.random.default_rng(0).integers(0, 2**64, size=10_000, dtype=np.uint64)
    for sample in (words, random):
        np.testing.assert_array_equal(_below(sample, p), _uniforms(sample) < p)


def test_sampler_batches_are_the_float_uniforms_rows():
    n, q = 1000, 0.05
    sampler = SitePoissonSampler(
        num_samples=n, sample_rate=q, steps=5, randomness=SiteRandomness(key=bytes(range(32)))
    )
    reference = SiteRandomness(key=bytes(range(32)))
    batches = list(sampler)
    assert batches == [np.flatnonzero(reference.uniform(n) < q).tolist() for _ in range(5)]
    assert all(len(batch) > 0 for batch in batches)


def _sequential_standard_normal(randomness: SiteRandomness, n: int) -> np.ndarray:
    """The recipe as first written: one draw per call (two keystream reads, four rows summed)."""
    u1, u2 = 1.0 - randomness.uniform(2 * n), randomness.uniform(2 * n)
    radius = np.sqrt(-2.0 * np.log(u1))
    normals = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    return normals.reshape(4, n).sum(axis=0) / 2.0


@pytest.mark.parametrize("sizes", [(1,), (60,), (60, 1), (1, 60, 7, 1), (1920, 32, 32, 1)])
def test_one_draw_for_several_tensors_is_bit_for_bit_the_draws_one_by_one(sizes):
    key = bytes(range(32))
    together = SiteRandomness(key=key).standard_normals(sizes)
    one_by_one, reference = SiteRandomness(key=key), SiteRandomness(key=key)
    expected = np.concatenate([_sequential_standard_normal(reference, n) for n in sizes])
    assert np.array_equal(together, expected)
    assert np.array_equal(np.concatenate([one_by_one.standard_normal(n) for n in sizes]), expected)

    # as tensors: the recipe's float64 noise cast by torch, for each dtype a model may have
    dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    tensors = [torch.zeros(1, n, dtype=dtypes[i % 4]) for i, n in enumerate(sizes)]
    got = SiteRandomness(key=key).gaussians_like(tensors, 0.7)
    starts = np.cumsum((0, *sizes))
    for part, tensor, start, end in zip(got, tensors, starts, starts[1:], strict=False):
        want = torch.from_numpy(expected[start:end] * 0.7).to(tensor.dtype).reshape(tensor.shape)
        assert part.dtype == tensor.dtype and torch.equal(part, want)
    single = SiteRandomness(key=key).gaussian_like(tensors[0], 0.7)
    assert torch.equal(single, got[0])
