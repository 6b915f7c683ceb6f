"""Command line of the package: ``python -m pit serve MODULE`` starts a worker,
``python -m pit template MODULE --preload M ... [--warmup MODULE:FUNCTION]`` the preload
template of a pool.

Only pitd is expected to run these (it passes the protocol fds from 3 up); see
:mod:`pit.worker` and :mod:`pit.template` for lifecycles and exit statuses. Usage errors
exit 2.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
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
    template = commands.add_parser(
        "template",
        help="import the --preload modules once, then fork workers serving MODULE on pitd's request "
        "(what a pool with preload = [...] runs)",
    )
    template.add_argument("module", metavar="MODULE", help="the module each forked worker serves")
    template.add_argument(
        "--preload",
        metavar="M",
        action="append",
        default=[],
        help="a module to import before forking (repeatable)",
    )
    template.add_argument(
        "--warmup",
        metavar="MODULE:FUNCTION",
        type=_warmup,
        help="a function to call once after the preload, before forking (what a pool's warmup names)",
    )
    args = parser.parse_args(argv)

    if args.command == "template":
        from .template import run as run_template

        return run_template(args.module, args.preload, args.warmup)

    from .worker import exit_process, serve as run_worker

    exit_process(run_worker(args.module))


def _warmup(spec: str) -> str:
    """``--warmup``'s value, checked: a usage error (exit 2) rather than a failed warm-up."""
    from .template import parse_warmup

    try:
        parse_warmup(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return spec


if __name__ == "__main__":
    sys.exit(main())
