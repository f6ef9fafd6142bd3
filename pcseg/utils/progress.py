"""Progress reporting that suits where the output goes.

A person at a terminal gets a tqdm bar; a log file or CI gets one plain line when a step
ends (and one per ``log_every_s`` seconds while a long step runs), never the thousands of
carriage-return redraws a bar writes into a file.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress", "stderr_is_terminal"]

T = TypeVar("T")


def stderr_is_terminal() -> bool:
    """True when standard error is an interactive terminal (where a bar can redraw)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


class _LineProgress:
    """tqdm's small interface (iterate, ``update``, ``set_postfix``, ``close``) printing lines."""

    def __init__(self, iterable, total, desc, unit, initial, log_every_s):
        self.iterable = iterable
        self.total = total if total is not None else _length(iterable)
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.start = time.perf_counter()
        self.last_line = self.start
        self.log_every_s = log_every_s
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last_line >= self.log_every_s:
            self.last_line = now
            self._line(now, final=False)

    def set_postfix(self, values: dict | None = None, **kwargs) -> None:
        items = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(time.perf_counter(), final=True)

    def _line(self, now: float, final: bool) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        state = "done" if final else "running"
        postfix = f", {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc}: {count} {self.unit} {state} in {now - self.start:.1f} s{postfix}",
            file=sys.stderr,
            flush=True,
        )


def _length(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    initial: int = 0,
    log_every_s: float = 30.0,
):
    """A progress reporter over ``iterable`` (or updated by hand when ``iterable`` is None).

    Args:
        iterable: the items to iterate over, or None to call ``update(n)`` yourself.
        total: the number of units expected (defaults to ``len(iterable)`` where it has one).
        desc: what the step is, printed before the count.
        unit: the name of one unit (``"room"``, ``"pt"``).
        enabled: False reports nothing at all.
        initial: units already done (a resumed epoch).
        log_every_s: without a terminal, the least time between two lines of a running step.

    Returns:
        An object with tqdm's iteration, ``update``, ``set_postfix`` and ``close``, usable as
        a context manager: a tqdm bar when stderr is a terminal, else a line printer.
    """
    if not enabled:
        from tqdm import tqdm

        return tqdm(iterable, total=total, disable=True)
    if stderr_is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False, unit_scale=unit == "pt")
    return _LineProgress(iterable if iterable is not None else (), total, desc, unit, initial, log_every_s)
