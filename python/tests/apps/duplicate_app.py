"""Two functions claim one method name."""

import pit


@pit.handler("same")
def first(args):
    return 1


@pit.handler("same")
def second(args):
    return 2
