"""A per-process cache of loaded sites, bounded in bytes rather than in number of sites.

One simulation worker (a Ray actor) plays many hospitals in turn. A count-bounded cache
either holds many large sites or, with hundreds of small ones visited in a cycle, misses on
every call. Bounding the bytes keeps a worker's memory independent of the number of sites:
at most the cap plus the one site it is training on.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

CACHE_MB_ENV = "LHSFED_SITE_CACHE_MB"
DEFAULT_CACHE_MB = 256.0

V = TypeVar("V")


def cache_limit_bytes() -> int:
    """Byte cap from ``LHSFED_SITE_CACHE_MB`` (0 turns caching off)."""
    return int(float(os.environ.get(CACHE_MB_ENV, DEFAULT_CACHE_MB)) * 2**20)


class ByteBoundedCache(Generic[V]):
    """Least-recently-used mapping evicting until the total size fits ``limit_bytes``."""

    def __init__(self, limit_bytes: int, size_of: Callable[[V], int]) -> None:
        self.limit_bytes = limit_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0]
        value = load()
        size = self._size_of(value)
        if size <= self.limit_bytes:
            self._items[key] = (value, size)
            self.total_bytes += size
            while self.total_bytes > self.limit_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self.total_bytes -= evicted
        return value
