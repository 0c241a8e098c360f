"""Read back the ε a finished run shows to people: its report's sites table and ``lhsfed
registry show``; the tests compare both with the sites' ledgers ("ε shown is ε spent")."""

from __future__ import annotations

from pathlib import Path

from federation.cli.main import main as lhsfed
from federation.core.run_layout import REPORT_MD

SITES_TABLE = "### Sites: data sizes and privacy spent"


def report_sites(run_dir: Path, capsys) -> dict[str, dict[str, str]]:
    """``lhsfed evaluate RUN_DIR`` (it writes the report), then the report's sites table:
    site -> {column header: cell}."""
    assert lhsfed(["evaluate", str(run_dir)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    lines = (Path(run_dir) / REPORT_MD).read_text().splitlines()
    start = lines.index(SITES_TABLE)
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    rows = {}
    for line in lines[start + 4 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def registry_show(uri: str, task: str, capsys) -> list[str]:
    """The lines ``lhsfed registry show TASK --uri URI`` prints."""
    assert lhsfed(["registry", "show", task, "--uri", uri]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.splitlines()


def shown_per_site(line: str, label: str) -> dict[str, float]:
    """``label site1 v1, site2 v2`` in a ``registry show`` line -> {site: v} (up to two spaces)."""
    text = line.split(label + " ", 1)[1].split("  ")[0].split(" (")[0].split(";")[0]
    pairs = (item.strip().rsplit(" ", 1) for item in text.split(","))
    return {site: float(value) for site, value in pairs}
