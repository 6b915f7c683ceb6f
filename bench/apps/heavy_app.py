"""Handlers over the heavy module: `echo`, and `score`, which reads the shared tables."""

import heavy_import
import pit


@pit.handler
def echo(args, ctx):
    return args


@pit.handler
def score(args, ctx):
    return heavy_import.VOCAB.get(str(args), -1) + len(heavy_import.WEIGHTS)
