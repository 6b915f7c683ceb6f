"""The peers' virtual environment (``bench/.venv`` by default): created with ``python3 -m
venv`` by the interpreter running the benchmark, the peers installed into it from PyPI with
its own pip. pip is asked only while a package is missing or older than the benchmark
needs; a peer that cannot be installed is reported with pip's reason, never an error: its
benchmark's rows say so. The scripts run the peers as processes of that environment and
never import them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pitbench.report import progress

#: Bounds on the environment's creation and on one pip install, seconds.
CREATE_S = 300.0
INSTALL_S = 600.0


def version_key(version: str) -> tuple[int, ...]:
    """The leading numbers of a version: ``27.0.1`` -> (27, 0, 1), ``26.0rc1`` -> (26, 0)."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(parts)


def split_requirement(requirement: str) -> tuple[str, str | None]:
    """``gunicorn>=27`` -> (``gunicorn``, ``27``); a bare name has no minimum."""
    name, _, minimum = requirement.partition(">=")
    return name.strip(), minimum.strip() or None


def python(venv: Path) -> Path:
    """The environment's interpreter."""
    return venv / "bin" / "python"


def installed_version(venv: Path, package: str) -> str | None:
    """The version of ``package`` in the environment, None when it is not there."""
    out = subprocess.run(
        [str(python(venv)), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def install(venv: Path, requirements: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Creates ``venv`` if needed and installs each peer's requirement (``name`` or
    ``name>=X``) into it. Returns (peer -> version) for the peers that are available and
    (peer -> why not) for the others."""
    versions: dict[str, str] = {}
    missing: dict[str, str] = {}
    if not python(venv).exists():
        progress(f"creating a virtual environment ({venv.name})")
        out = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=CREATE_S
        )
        if out.returncode != 0:
            why = f"python3 -m venv failed: {(out.stderr or out.stdout).strip()[-400:]}"
            return {}, dict.fromkeys(requirements, why)

    for peer, requirement in requirements.items():
        package, minimum = split_requirement(requirement)
        v = installed_version(venv, package)
        if v is None or (minimum is not None and version_key(v) < version_key(minimum)):
            progress(f"pip install {requirement}")
            out = subprocess.run(
                [str(python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q", requirement],
                capture_output=True,
                text=True,
                timeout=INSTALL_S,
            )
            if out.returncode != 0:
                why = " / ".join(
                    line.strip() for line in (out.stderr or out.stdout).strip().splitlines()[-3:]
                )
                missing[peer] = f"pip install {requirement} failed: {why}"
                continue
            v = installed_version(venv, package)
        if v is None:
            missing[peer] = f"{package} does not import after pip install"
        elif minimum is not None and version_key(v) < version_key(minimum):
            missing[peer] = f"{package} {v} is installed, {requirement} is needed"
        else:
            versions[peer] = v
    return versions, missing
