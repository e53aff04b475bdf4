"""`asyncmq observability generate`: write the Grafana dashboards and the Prometheus alert
rules from their Python sources, or check that the committed files still match them.

The JSON and YAML are committed so that Grafana and Prometheus can load them without
installing asyncmq; generating both from one PromQL catalogue keeps every panel charting what
its alert fires on, and `--check` in CI catches a source edited without regenerating.
"""

from __future__ import annotations

from pathlib import Path

import click

from asyncmq.cli.failures import CommandFailure, ExitCode

__all__ = ["DASHBOARDS", "RULES", "generated_files", "observability_group"]

#: Where the `*.dashboard.py` sources and their generated `*.json` live, under the root.
DASHBOARDS = Path("dashboards")
#: The generated Prometheus rule file, under the root.
RULES = Path("alerts", "asyncmq.rules.yml")


@click.group("observability")
def observability_group() -> None:
    """Generate the Grafana dashboards and Prometheus alert rules."""


def _require_extra() -> None:
    """Fail with the extra's name, not with an import error from deep inside a generator."""
    try:
        import grafanalib  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        raise CommandFailure(
            ExitCode.CONFIGURATION, f"generating needs {exc.name}: pip install 'asyncmq[dashboards]'"
        ) from exc


def generated_files(root: Path, alerts_config: Path | None) -> dict[Path, bytes]:
    """Every generated file, relative to `root`, with the bytes it must hold."""
    _require_extra()
    from asyncmq.observability.alerts import AlertConfig, render_rules
    from asyncmq.observability.grafana import render_dashboard

    sources = sorted((root / DASHBOARDS).glob("*.dashboard.py"))
    if not sources:
        raise click.ClickException(f"no {DASHBOARDS.as_posix()}/*.dashboard.py under {root}")
    files = {
        DASHBOARDS / source.name.replace(".dashboard.py", ".json"): render_dashboard(source).encode()
        for source in sources
    }
    files[RULES] = render_rules(AlertConfig.load(alerts_config)).encode()
    return files


def _differs(path: Path, content: bytes) -> bool:
    return not path.is_file() or path.read_bytes() != content


@observability_group.command("generate")
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The checkout holding dashboards/ and alerts/.",
)
@click.option("--check", is_flag=True, help="Write nothing; fail listing every file that differs (for CI).")
@click.option(
    "--alerts-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Alert thresholds to render the rules with, instead of the defaults.",
)
def generate(root: Path, check: bool, alerts_config: Path | None) -> None:
    """Regenerate the dashboards and alert rules.

    dashboards/*.json from dashboards/*.dashboard.py, and alerts/asyncmq.rules.yml from
    asyncmq's alert definitions and the thresholds in --alerts-config.
    """
    files = generated_files(root, alerts_config)
    stale = [path for path, content in files.items() if _differs(root / path, content)]
    if check:
        if stale:
            listed = ", ".join(path.as_posix() for path in stale)
            raise click.ClickException(f"out of date (run `asyncmq observability generate`): {listed}")
        click.echo(f"{len(files)} generated files are up to date.")
        return
    for path in stale:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(files[path])
        click.echo(f"wrote {path.as_posix()}")
    click.echo(f"{len(files) - len(stale)} of {len(files)} generated files were already up to date.")
