"""The per-process site cache is bounded by bytes, whatever the number of sites."""

from __future__ import annotations

from client.site_cache import ByteBoundedCache


def test_cache_keeps_total_bytes_under_the_limit_and_evicts_least_recent():
    loads = []
    cache = ByteBoundedCache(limit_bytes=300, size_of=len)

    def load(key):
        loads.append(key)
        return "x" * 100

    for key in range(50):  # fifty sites of 100 bytes through a 300-byte cache
        cache.get_or_load(key, lambda k=key: load(k))
        assert cache.total_bytes <= 300 and len(cache) <= 3
    cache.get_or_load(48, lambda: load(48))
    cache.get_or_load(47, lambda: load(47))

    assert loads == list(range(50))  # 47..49 were still cached
    cache.get_or_load(0, lambda: load(0))
    assert loads[-1] == 0


def test_a_site_larger_than_the_limit_is_returned_but_not_kept():
    cache = ByteBoundedCache(limit_bytes=10, size_of=len)

    assert cache.get_or_load("big", lambda: "y" * 11) == "y" * 11
    assert len(cache) == 0 and cache.total_bytes == 0
