"""The test-only fault mod: its spec parser and the corruptions it applies (pure parts)."""

from __future__ import annotations

import numpy as np
import pytest

from client.faults import FAULTS_ENV, Fault, corrupt, mods_from_env, parse_faults
from federation.core.errors import ConfigError


def test_parse_faults_reads_sites_kinds_and_rounds():
    faults = parse_faults("va:nan@1, hungary:raise,cleveland:signflip@12")
    assert faults == [Fault("va", "nan", 1), Fault("hungary", "raise", None),
                      Fault("cleveland", "signflip", 12)]
    assert faults[0].applies("va", 1) and not faults[0].applies("va", 2)
    assert faults[1].applies("hungary", 7)


def test_parse_faults_reports_every_bad_entry_at_once():
    with pytest.raises(ConfigError) as err:
        parse_faults("va:melt,hungary:nan@x,:nan")
    assert str(err.value).count("must be SITE:KIND[@ROUND]") == 3


def test_corruptions():
    sent = {"w": np.zeros((3, 2), "float32"), "b": np.ones(2, "float32")}
    trained = {"w": np.full((3, 2), 0.5, "float32"), "b": np.full(2, 2.0, "float32")}

    assert np.isnan(corrupt("nan", sent, trained)["w"]).all()
    assert corrupt("shape", sent, trained)["w"].shape == (2, 2)
    np.testing.assert_allclose(corrupt("scale", sent, trained)["b"], 1.0 + 1000.0)
    flipped = corrupt("signflip", sent, trained)
    np.testing.assert_allclose(flipped["w"], -0.5)
    np.testing.assert_allclose(flipped["b"], 0.0)
    assert all(v.dtype == np.float32 for v in flipped.values())


def test_no_mod_unless_the_test_variable_is_set(monkeypatch):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    assert mods_from_env() == []
    monkeypatch.setenv(FAULTS_ENV, "va:nan")
    assert len(mods_from_env()) == 1
