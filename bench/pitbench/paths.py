"""Where things are in this checkout, for every benchmark: the scripts find the release
binaries, the ``pit`` package and the benchmark apps relative to this file, so that they run
from any working directory."""

from __future__ import annotations

from pathlib import Path

#: The ``bench/`` directory.
BENCH = Path(__file__).resolve().parent.parent
#: The repository's root.
REPO = BENCH.parent
#: The apps the benchmark pools serve (``bench/apps``), a pool's ``cwd``.
APPS = BENCH / "apps"
#: The Python package ``pit`` (``python/``): the workers' runtime and the clients.
PYTHON_DIR = REPO / "python"
#: Where ``cargo build --release`` puts pitd and pitctl: every script's default ``--bin-dir``.
BIN_DIR = REPO / "target" / "release"
