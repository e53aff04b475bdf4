"""The committed dashboards are exactly what their sources generate, and `--check` says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asyncmq.errors import ConfigurationError
from asyncmq.observability.grafana import render_dashboard, runbooks_dashboard
from tests.cli.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "dashboards").glob("*.dashboard.py"))


def _committed(source: Path) -> Path:
    return source.with_name(source.name.replace(".dashboard.py", ".json"))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the dashboards and the runbooks they show, to edit without touching the repository."""
    shutil.copytree(ROOT / "dashboards", tmp_path / "dashboards")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "runbooks.md", tmp_path / "docs")
    return tmp_path


def test_every_dashboard_has_a_source() -> None:
    names = [source.name for source in SOURCES]
    assert names == ["overview.dashboard.py", "queue.dashboard.py", "runbooks.dashboard.py"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_rendering_a_source_gives_exactly_the_committed_json(source: Path) -> None:
    assert render_dashboard(source) == _committed(source).read_text(encoding="utf-8")


def test_generate_check_passes_on_the_repository() -> None:
    result = invoke("observability", "generate", "--root", str(ROOT), "--check")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_generate_check_fails_naming_a_dashboard_edited_by_hand(checkout: Path) -> None:
    edited = checkout / "dashboards" / "overview.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Throughput", "Thruput"), encoding="utf-8")
    result = invoke("observability", "generate", "--root", str(checkout), "--check")
    assert result.exit_code == 1
    assert "dashboards/overview.json" in result.output
    assert "dashboards/queue.json" not in result.output
    assert "Thruput" in edited.read_text(encoding="utf-8")  # --check writes nothing


def test_generate_rewrites_an_edited_dashboard_and_the_rules(checkout: Path) -> None:
    edited = checkout / "dashboards" / "queue.json"
    edited.write_text("{}\n", encoding="utf-8")
    result = invoke("observability", "generate", "--root", str(checkout))
    assert result.exit_code == 0, result.output
    assert "wrote dashboards/queue.json" in result.output
    assert edited.read_bytes() == (ROOT / "dashboards" / "queue.json").read_bytes()
    assert (checkout / "alerts" / "asyncmq.rules.yml").is_file()
    assert invoke("observability", "generate", "--root", str(checkout), "--check").exit_code == 0


def test_a_root_without_dashboard_sources_is_an_error(tmp_path: Path) -> None:
    result = invoke("observability", "generate", "--root", str(tmp_path), "--check")
    assert result.exit_code == 1
    assert "no dashboards/*.dashboard.py under" in result.output


@pytest.mark.parametrize("module", ["grafanalib", "yaml"])
def test_a_missing_extra_is_an_error_naming_the_pip_install(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    result = invoke("observability", "generate", "--root", str(ROOT), "--check")
    assert result.exit_code == 3  # a missing extra is a configuration error
    assert f"Error: generating needs {module}: pip install 'asyncmq[dashboards]'" in result.output


def test_the_cli_loads_without_importing_the_dashboards_extra() -> None:
    code = "import sys, asyncmq.cli.main; print([m for m in ('grafanalib', 'yaml') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_runbook_section_for_no_alert_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"section `## AsyncMQNoSuchAlert` for no alert"):
        runbooks_dashboard("# Runbooks\n\n## AsyncMQNoSuchAlert\n\nText.\n")
