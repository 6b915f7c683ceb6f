#!/usr/bin/env python3
"""Builds CPython 3.13 twice from the same source, once each, into ``target/``: the
free-threaded build (``target/python-ft/bin/python3.13t``) and the default build with the
GIL (``target/python-gil/bin/python3.13``); ``pitbench/cpython.py`` says how.

A build already there is reused. Prints each interpreter's path, version and whether its
GIL is on at start; for the free-threaded build, also what importing CPython's test module
``_testsinglephase`` does to its GIL (it turns it back on, with a RuntimeWarning naming
the module: what pit reports as ``GIL_REENABLED``).

Usage::

    python3 bench/pythons.py                 # both builds (about 3 to 12 minutes each on 2 cores)
    python3 bench/pythons.py --only ft       # the free-threaded build alone (what .ci/run needs)
    python3 bench/pythons.py --path ft       # its interpreter's path, building nothing (exit 1 if absent)

Exit status 0 when every build asked for is there, 2 when one cannot be built here (the
reason printed: no apt and no network, a failed compile).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from pitbench import cpython


def describe(python: str, gil_module: bool) -> str:
    """Version, build and GIL state of an interpreter, as it reports them itself."""
    code = (
        "import sys, sysconfig, warnings\n"
        "print(sys.version.split()[0], 'free-threaded' if sysconfig.get_config_var('Py_GIL_DISABLED')"
        " else 'with the GIL', 'GIL on' if getattr(sys, '_is_gil_enabled', lambda: True)() else 'GIL off')\n"
    )
    if gil_module:
        code += (
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import importlib.util\n"
            f"    spec = importlib.util.spec_from_file_location({cpython.GIL_MODULE!r}, "
            f"importlib.import_module({cpython.GIL_MODULE_FILE!r}).__file__)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            f"print('after import {cpython.GIL_MODULE}:', 'GIL on' if sys._is_gil_enabled() else 'GIL off')\n"
            "for x in w: print('  ' + x.category.__name__ + ': ' + str(x.message))\n"
        )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(cpython.BUILDS), help="one build instead of both")
    parser.add_argument(
        "--path", choices=sorted(cpython.BUILDS), help="print that build's interpreter, building nothing"
    )
    parser.add_argument("--jobs", type=int, help="make -j (default: the usable cores)")
    args = parser.parse_args(argv)
    if args.path:
        python = cpython.built(cpython.BUILDS[args.path])
        if python is None:
            print(f"{cpython.BUILDS[args.path].python} is not built", file=sys.stderr)
            return 1
        print(python)
        return 0
    names = [args.only] if args.only else list(cpython.BUILDS)
    for name in names:
        build = cpython.BUILDS[name]
        try:
            python = cpython.ensure(build, args.jobs)
        except cpython.Unavailable as e:
            print(f"cannot build CPython ({name}): {e}", file=sys.stderr)
            return 2
        print(f"{name}: {python}")
        print("  " + describe(str(python), build is cpython.FREE_THREADED).replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
