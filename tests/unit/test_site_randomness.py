"""The site's Poisson sampler draws rows by integer comparison: the same rows as ``uniform < q``."""

from __future__ import annotations

import numpy as np
import pytest

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
