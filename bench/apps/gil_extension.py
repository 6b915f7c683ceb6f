"""Loads a module that turns a free-threaded build's GIL back on: CPython's test extension
``_testsinglephase`` (built and installed with the interpreter) also holds
``_testsinglephase_check_cache_first``, a single-phase-init module that does not declare
``Py_MOD_GIL_NOT_USED``. Loading it under that name makes the interpreter enable the GIL
for the rest of the process, with a RuntimeWarning naming the module, just as importing a
third-party extension built without free-threading support does. On a build with the GIL
it is a plain import."""

from __future__ import annotations

import importlib
import importlib.util

MODULE = "_testsinglephase_check_cache_first"

_origin = importlib.import_module("_testsinglephase").__file__
_spec = importlib.util.spec_from_file_location(MODULE, _origin)
if _spec is None or _spec.loader is None:
    raise ImportError(f"no extension loader for {_origin}")
extension = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(extension)
