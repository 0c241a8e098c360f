"""A node that failed before naming itself in a run is ``node N (site unknown)`` to the
ServerApp; the coordinator's console names it by its registration (issue R: "a site named in
one run is 'node 27467… (site unknown)' in the next")."""

from __future__ import annotations

from federation.coordinator.deployment import name_registered_sites, registered_names

LINE = "  round 1 train: node 27467 (site unknown): node unavailable"


def test_a_registered_node_is_named():
    named = name_registered_sites(LINE, {27467: "hungary"})
    assert named == "  round 1 train: site hungary (node 27467, by its registration): node unavailable"


def test_an_unregistered_or_unlisted_node_stays_unknown():
    assert name_registered_sites(LINE, {}) == LINE
    assert name_registered_sites(LINE, {1: "cleveland"}) == LINE


def test_a_superlink_that_cannot_be_listed_names_nothing_and_does_not_fail(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    assert registered_names("127.0.0.1:9", ca) == {}  # port 9: nothing listens on the loopback
