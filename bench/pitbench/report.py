"""The pieces of the benchmarks' printed tables: number formats, plain-text columns,
progress lines on stderr, and the machine's load average for a header."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def progress(message: str, prefix: str = "  ") -> None:
    """A progress line on stderr (stdout is the table), shown at once."""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


def loadavg(values: Sequence[float] | None = None) -> str:
    """The 1, 5 and 15 minute load averages, now or as ``os.getloadavg()`` gave them
    earlier: ``1.02 0.87 0.55``."""
    return " ".join(f"{x:.2f}" for x in (os.getloadavg() if values is None else values))


def fmt_ms(v: float) -> str:
    """Milliseconds with three significant digits or so: ``4.27``, ``42.7``, ``427``."""
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], rule: bool = False) -> None:
    """Prints ``header`` and ``rows`` in columns as wide as their widest cell. With ``rule``
    every column is left-aligned and a line of dashes follows the header; without, the
    first column (the row's name) is left-aligned and the figures right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, *([tuple("-" * w for w in widths)] if rule else []), *rows]
    for line in lines:
        cells = (
            str(c).ljust(w) if rule or i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(line, widths))
        )
        print("  ".join(cells).rstrip() if rule else "  ".join(cells))
