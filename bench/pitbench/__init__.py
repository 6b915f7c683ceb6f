"""What the benchmark scripts of ``bench/`` share, so that each script holds only its
measurements and its table. The scripts import from here and never from each other.

``paths``
    this checkout: ``bench/``, the apps, the ``pit`` package, the release binaries.
``stats``
    the one percentile definition (the one ``pitctl bench`` uses), median and mean.
``procfs``
    what the scripts read from ``/proc``: a process's fields, CPU time and memory, its
    descendants, a watch for a new child, the machine's CPU accounting, and the check that
    nothing a benchmark started outlives it.
``daemon``
    the life of a daemon a benchmark starts (pitd or a peer): its temporary directory, the
    start, the wait until its workers are ready, the stop and the leftover check.
``events``
    pitd's event stream followed from a ``pitctl events -f --json`` process, and event times.
``wire``
    the framing of pitd's sockets (4-byte big-endian length + JSON): one request on the
    control socket, frames read and written on a connection.
``specs``
    pitd specs as TOML lines, from Python values.
``report``
    the pieces of the scripts' printed tables: number formats, columns, progress lines.
``loopback``
    a server a script runs as its own child process on 127.0.0.1 (an HTTP backend).
``pipes``
    a child process on two pipes, as pitd runs a worker (its fds 3 and 4): the floors.
``venv``
    the peers' virtual environment: created once, the peers installed from PyPI into it.

Importing the package puts this checkout's ``python/`` first on ``sys.path``: a benchmark
measures the ``pit`` package next to it, not one installed in the interpreter. The scripts'
``import pit`` comes after their ``pitbench`` imports (ruff's import order keeps it there).
"""

from __future__ import annotations

import sys

from pitbench.paths import PYTHON_DIR

if sys.path[:1] != [str(PYTHON_DIR)]:
    sys.path.insert(0, str(PYTHON_DIR))
