"""SecAgg+ mask generator (federation/core/secagg_masks.py): full-key, uniform, pinned, installed.

Each security property is shown as an attack that fails on ``mask_prg`` next to a control
showing that it works on Flower 1.41's ``pseudo_rand_gen`` (``FLOWER_PRG``).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import client.secure_aggregation  # noqa: F401  (installs on the client side)
import server.secure_aggregation  # noqa: F401  (installs on the server side)
from federation.core import secagg_masks
from federation.core.secagg_masks import FLOWER_PRG, mask_prg

KEY = bytes(range(32))
DRAWS = 60_000


def _fold_twin(key: bytes) -> bytes:
    """Another key with the same 32-bit XOR fold: flip the same bits in words 0 and 1."""
    words = [int.from_bytes(key[i : i + 4], "little") for i in range(0, len(key), 4)]
    words[0] ^= 0xDEADBEEF
    words[1] ^= 0xDEADBEEF
    return b"".join(w.to_bytes(4, "little") for w in words)


def test_keys_with_the_same_32_bit_fold_give_different_masks():
    twin = _fold_twin(KEY)
    shapes = [(1,), (1000,)]
    assert twin != KEY

    flower = [
        np.array_equal(a, b) for a, b in zip(FLOWER_PRG(KEY, 2**32, shapes), FLOWER_PRG(twin, 2**32, shapes))
    ]
    ours = np.concatenate(
        [(a == b).ravel() for a, b in zip(mask_prg(KEY, 2**32, shapes), mask_prg(twin, 2**32, shapes))]
    )

    assert all(flower)  # control: Flower's masks depend only on the fold
    assert ours.mean() < 0.01  # ours: unrelated streams (chance agreement is 2^-32 per value)


def test_test_vector():
    masks = mask_prg(KEY, 2**32, [(1,), (2, 3)])
    tiny = mask_prg(KEY, 5, [(8,), ()])

    assert [m.tolist() for m in masks] == [
        [3087556423],
        [[1381903855, 1991016538, 176787926], [3785587494, 3517341648, 1646802802]],
    ]
    assert [m.tolist() for m in tiny] == [[2, 0, 2, 2, 4, 2, 2, 1], 1]
    assert all(m.dtype == np.int64 for m in masks + tiny) and tiny[1].shape == ()


def _raw_words(count: int) -> np.ndarray:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=secagg_masks.INFO).derive(KEY)
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(8 * count)), dtype="<u8")


def test_test_vector_is_hkdf_chacha20_words_with_rejection():
    """The vector follows from the construction in the module docstring, rebuilt here."""
    words = _raw_words(64)
    low3 = words & np.uint64(7)

    masks = mask_prg(KEY, 2**32, [(1,), (2, 3)])
    tiny = mask_prg(KEY, 5, [(8,), ()])

    assert (
        np.concatenate([m.ravel() for m in masks]).tolist() == (words[:7] & np.uint64(2**32 - 1)).tolist()
    )  # 2^32: no word rejected
    assert np.concatenate([m.ravel() for m in tiny]).tolist() == low3[low3 < 5][:9].tolist()


@pytest.mark.parametrize("num_range", [2, 3, 5, 7, 10])
def test_masks_are_uniform_over_the_whole_range_including_the_top_value(num_range):
    draws = mask_prg(KEY, num_range, [(DRAWS,)])[0]
    flower = FLOWER_PRG(KEY, num_range, [(DRAWS,)])[0]

    counts = np.bincount(draws, minlength=num_range)
    expected = DRAWS / num_range
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert draws.min() >= 0 and draws.max() == num_range - 1
    assert len(counts) == num_range and chi2 < 40  # df <= 9: 40 is far beyond p = 1e-5
    assert flower.max() == num_range - 2  # control: Flower never draws the top value


def test_large_range_fills_the_top_half():
    """2^32 (the modulus used here): values reach the top of the range, mean in the middle."""
    draws = mask_prg(KEY, 2**32, [(DRAWS,)])[0]

    assert draws.max() > 2**32 * 0.999 and abs(draws.mean() / 2**32 - 0.5) < 0.01


@pytest.mark.parametrize("num_range", [0, 2**63 + 1])
def test_range_outside_int64_is_refused_with_the_setting_to_change(num_range):
    with pytest.raises(ValueError, match="MODULUS_RANGE"):
        mask_prg(KEY, num_range, [(1,)])


def test_both_flower_secaggplus_modules_call_mask_prg():
    for name in (
        "flwr.client.mod.secure_aggregation.secaggplus_mod",
        "flwr.server.workflow.secure_aggregation.secaggplus_workflow",
    ):
        assert importlib.import_module(name).pseudo_rand_gen is mask_prg


def test_install_refuses_a_flower_whose_modules_changed(monkeypatch):
    module = secagg_masks.PATCHED_MODULES[0]
    monkeypatch.setattr(module, "pseudo_rand_gen", lambda *args: [])

    with pytest.raises(RuntimeError, match="federation/core/secagg_masks.py"):
        secagg_masks.install()
