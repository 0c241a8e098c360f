"""SecAgg+ masks from a cryptographic PRG: replaces Flower 1.41's ``pseudo_rand_gen``.

Flower's ``flwr.common.secure_aggregation.secaggplus_utils.pseudo_rand_gen`` XOR-folds the
32-byte mask key to 32 bits and seeds numpy's MT19937 with it (Flower issue #7522, not fixed
in 1.41). Two keys agreeing in their fold give the same mask, and the 2^32 seeds can be
searched in about 1.4 CPU-hours, so an honest-but-curious server unmasks every site of a
two-site round. Its ``randint(0, num_range - 1)`` also never draws the top value.

:func:`mask_prg` keeps Flower's signature and derives the masks from the *whole* key:
``k = HKDF-SHA256(key, info=INFO)``, then the ChaCha20 keystream under ``k`` (zero nonce: one
key, one stream) read as little-endian uint64 words, each cut to the bit length of
``num_range - 1`` and rejected if ``>= num_range``, so every value in ``[0, num_range)`` is
equally likely (no modulo bias). The accepted words, in stream order, fill the arrays in
order: one stream per call, no word skipped but the rejected ones.

:func:`install` points the one name both SecAgg+ modules call, ``pseudo_rand_gen`` in the
client mod and in the server workflow, at :func:`mask_prg` (for every mask: the private one
and the pairwise ones). ``client/secure_aggregation.py`` and ``server/secure_aggregation.py``
call it at import, so both sides always draw from the same generator; it refuses to patch a
Flower whose modules no longer hold 1.41's function, so an upgrade touches only this file.
"""

from __future__ import annotations

import importlib

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flwr.common.secure_aggregation import secaggplus_utils as _flwr_utils

INFO = b"lhs-federation secagg+ mask v1"
_NONCE = bytes(16)  # cryptography's ChaCha20 nonce: 4-byte counter + 12-byte nonce, all zero
_WORD = 8  # bytes per candidate draw
MAX_RANGE = 2**63  # masks are int64 arrays, as in Flower
FLOWER_PRG = _flwr_utils.pseudo_rand_gen  # the function replaced (kept for the tests' control)
# By import path: the packages re-export functions under these same names.
PATCHED_MODULES = tuple(
    importlib.import_module(name)
    for name in (
        "flwr.client.mod.secure_aggregation.secaggplus_mod",
        "flwr.server.workflow.secure_aggregation.secaggplus_workflow",
    )
)


def _keystream(key: bytes):
    """ChaCha20 keystream under a key derived from all of ``key``; call ``update`` for bytes."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(key)
    return Cipher(algorithms.ChaCha20(derived, _NONCE), mode=None).encryptor()


def _uniform(stream, num_range: int, count: int) -> np.ndarray:
    """``count`` values uniform on ``[0, num_range)`` by rejection sampling the stream."""
    bit_mask = np.uint64((1 << (num_range - 1).bit_length()) - 1)
    out, filled = np.empty(count, dtype=np.int64), 0
    while filled < count:  # draws exactly as many words as still needed: none is skipped
        words = np.frombuffer(stream.update(bytes(_WORD * (count - filled))), dtype="<u8")
        kept = words & bit_mask
        kept = kept[kept < np.uint64(num_range)]
        out[filled : filled + kept.size] = kept.astype(np.int64)
        filled += kept.size
    return out


def mask_prg(seed: bytes, num_range: int, dimensions_list: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Masks for ``dimensions_list``, uniform on ``[0, num_range)``, from the whole ``seed``.

    Drop-in for Flower's ``pseudo_rand_gen(seed, num_range, dimensions_list)``.
    """
    if not 1 <= num_range <= MAX_RANGE:
        raise ValueError(
            f"SecAgg+ mask range {num_range} must be in [1, 2**63]: set "
            "server/secure_aggregation.py MODULUS_RANGE within it"
        )
    stream = _keystream(bytes(seed))
    return [
        _uniform(stream, num_range, int(np.prod(shape, dtype=np.int64))).reshape(shape)
        for shape in dimensions_list
    ]


def install() -> None:
    """Make Flower's SecAgg+ client mod and server workflow draw their masks from mask_prg."""
    for module in PATCHED_MODULES:
        current = getattr(module, "pseudo_rand_gen", None)
        if current is not FLOWER_PRG and current is not mask_prg:
            raise RuntimeError(
                f"{module.__name__}.pseudo_rand_gen is not Flower 1.41's: review "
                "federation/core/secagg_masks.py for this Flower version"
            )
        module.pseudo_rand_gen = mask_prg
