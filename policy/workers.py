"""Independent units of work in worker processes (spawned), with one progress display in the parent.

A unit's function reports ``("start" | "done", what)`` events; the parent shows them as one bar that
advances per finished step and names what each worker runs now, or, when the bar is off because
stderr is no terminal, as one line per finished step (logs of piped runs show progress too).
Results come back in the units' order whatever the order of finishing.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from typing import Any

from earlyexit.console import bar

Report = Callable[[str, str], None]  # (event: "start" or "done", what)
_EVENTS: Any = None  # in a worker: the parent's event queue


def default_jobs() -> int:
    """Two workers where two CPUs are available, else one."""
    return min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Progress:
    """A bar over ``total`` steps on stderr (``progress`` as in earlyexit.console.bar), naming what runs now."""

    def __init__(self, total: int, progress: bool | None, unit: str, name: str) -> None:
        self.bar = bar(total=total, progress=progress, unit=unit)
        self.lines = progress is None and self.bar.disable  # stderr is no terminal: a line per finished step
        self.name, self.running, self.t0 = name, {}, time.perf_counter()
        self.done, self.total = 0, total

    def event(self, key: int, event: str, what: str) -> None:
        if event == "start":
            self.running[key] = what
        else:
            self.running.pop(key, None)
            self.done += 1
            self.bar.update()
            if self.lines:
                seconds = time.perf_counter() - self.t0
                print(f"{self.name}: {what} done ({self.done} of {self.total}, {seconds:.0f} s)", file=sys.stderr)
        if self.running:  # else the last description stands until the next step starts
            self.bar.set_description(f"{self.name}: {' | '.join(self.running.values())}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def run(fn: Callable[[Any, Report], Any], units: Sequence[Any], jobs: int, progress: Progress) -> list[Any]:
    """``[fn(unit, report) for unit in units]``, in ``jobs`` spawned processes when more than one (``fn`` and
    the units must pickle), reporting to ``progress``."""
    if jobs <= 1 or len(units) <= 1:
        return [fn(unit, lambda event, what, i=i: progress.event(i, event, what)) for i, unit in enumerate(units)]
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    with ProcessPoolExecutor(min(jobs, len(units)), context, initializer=_start, initargs=(events,)) as pool:
        futures = [pool.submit(_call, fn, i, unit) for i, unit in enumerate(units)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5)
            _drain(events, progress, block=False)
            progress.bar.refresh()
        results = [f.result() for f in futures]
    _drain(events, progress, block=True)  # the events a worker sent just before its unit returned
    return results


def _start(events) -> None:
    global _EVENTS
    _EVENTS = events


def _call(fn: Callable[[Any, Report], Any], i: int, unit: Any) -> Any:
    return fn(unit, lambda event, what: _EVENTS.put((i, event, what)))


def _drain(events, progress: Progress, block: bool) -> None:
    while not block or progress.done < progress.total:
        try:
            progress.event(*(events.get(timeout=1.0) if block else events.get_nowait()))
        except queue.Empty:
            return
