"""The run's report shows the privacy audit when ``lhsfed audit`` has written audit.json."""

from __future__ import annotations

import json

from federation.modeler.report import (
    audit_table,
    html_table,
    markdown_table,
    read_audit,
)


def _attack(auc: float, tpr: float) -> dict:
    return {
        "auc": auc,
        "auc_ci95": [auc - 0.05, auc + 0.05],
        "tpr_at_1pct_fpr": tpr,
        "members": 40,
        "non_members": 20,
    }


AUDIT = {
    "shadows": 8,
    "attacks": {
        "loss_threshold": {"va": _attack(0.675, 0.0), "all_sites": _attack(0.601, 0.0)},
        "lira_offline": {"va": _attack(0.731, 0.31), "all_sites": _attack(0.585, 0.006)},
    },
}


def test_audit_table_has_every_site_and_both_attacks():
    table = audit_table(AUDIT)

    assert [row[0] for row in table.rows] == ["va", "all sites"]
    assert table.rows[0][1] == "0.675 [0.62, 0.73]"
    assert table.rows[0][2].startswith("0.731")
    assert table.rows[0][3] == "0.000 / 0.310"
    assert "membership inference" in html_table(table) and "| va |" in markdown_table(table)


def test_audit_is_read_from_the_run_folder_only_when_present(tmp_path):
    assert read_audit(tmp_path) is None and audit_table(None) is None

    (tmp_path / "audit.json").write_text(json.dumps(AUDIT))

    assert read_audit(tmp_path) == AUDIT
