"""Claims the built-in `ping`: must be refused when the module is imported."""

import pit


@pit.handler
def ping(args):
    return "mine"
