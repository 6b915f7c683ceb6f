"""Command line of the package: ``python -m pit serve MODULE`` starts a worker.

Only pitd is expected to run this (it passes the protocol pipes on fds 3 and 4); see
:mod:`pit.worker` for the lifecycle and exit statuses. Usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pit",
        description="Worker runtime of pit: serves the @pit.handler functions of a module to pitd.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="import MODULE and answer pitd's calls on fds 3/4 (what a pool with app = MODULE runs)",
    )
    serve.add_argument("module", metavar="MODULE", help="dotted module name, e.g. myapp.handlers")
    args = parser.parse_args(argv)

    from .worker import serve as run_worker

    return run_worker(args.module)


if __name__ == "__main__":
    sys.exit(main())
