"""An app whose import turns a free-threaded build's GIL back on, as a third-party extension
module that does not declare it can run without the GIL would: it loads
`_testsinglephase_check_cache_first`, one of the modules in CPython's test extension
`_testsinglephase` (built and installed with the interpreter), whose single-phase init
does not say it is safe without the GIL. The interpreter then enables the GIL for good and
warns (RuntimeWarning) naming that module. With a build that has the GIL, nothing changes.
"""

import importlib.util
import os
import sys

import _testsinglephase

import pit

MODULE = "_testsinglephase_check_cache_first"

_spec = importlib.util.spec_from_file_location(MODULE, _testsinglephase.__file__)
extension = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(extension)


@pit.handler
def whoami(args, ctx):
    return {"worker": ctx.worker_id, "pid": os.getpid(), "gil": sys._is_gil_enabled(), "module": extension.__name__}
