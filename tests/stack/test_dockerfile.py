"""The Dockerfile, read statically: its base, its user, what it copies, and a default command
the asyncmq CLI accepts."""

from __future__ import annotations

import shlex
from fnmatch import fnmatch
from pathlib import PurePosixPath

from tests.stack.support import ROOT, asyncmq_help, dockerfile_instructions, exec_form, option

DOCKERFILE = ROOT / "Dockerfile"
INSTRUCTIONS = dockerfile_instructions(DOCKERFILE)


def _last(keyword: str) -> str:
    values = [arguments for instruction, arguments in INSTRUCTIONS if instruction == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    return values[-1]


def _excluded(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last pattern matching the path, or one of its parents, wins."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.removeprefix("!").strip("/")
        if any(fnmatch(prefix, cleaned) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_every_stage_builds_on_python_3_11_slim() -> None:
    bases = [arguments.split()[0] for instruction, arguments in INSTRUCTIONS if instruction == "FROM"]
    assert bases
    assert set(bases) == {"python:3.11-slim"}


def test_the_image_runs_as_a_non_root_user() -> None:
    user = _last("USER").split(":")[0]
    assert user not in {"root", "0"}


def test_the_image_installs_the_redis_and_observability_extras() -> None:
    installs = [arguments for instruction, arguments in INSTRUCTIONS if instruction == "RUN"]
    assert any("pip install" in run and "[redis,observability]" in run for run in installs)


def test_the_default_command_is_a_worker_serving_metrics_on_every_interface() -> None:
    argv = exec_form(_last("ENTRYPOINT")) + exec_form(_last("CMD"))
    assert argv[:3] == ["asyncmq", "worker", "start"], argv
    assert option(argv, "--metrics-host") == "0.0.0.0"
    assert option(argv, "--metrics-port") == "9100"
    result = asyncmq_help(argv[1:])
    assert result.returncode == 0, result.stderr


def test_everything_the_image_copies_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [shlex.split(arguments) for instruction, arguments in INSTRUCTIONS if instruction == "COPY"]
    # Sources from the build context: COPY --from reads another stage instead.
    sources = [
        src
        for copy in copies
        if not any(arg.startswith("--from") for arg in copy)
        for src in copy[:-1]
        if not src.startswith("--")
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _excluded(source, patterns), f"COPY {source}: left out by .dockerignore"
        if (ROOT / source).is_dir():
            inside = next(p for p in (ROOT / source).rglob("*.py"))
            assert not _excluded(str(inside.relative_to(ROOT)), patterns), f"{inside} left out"
