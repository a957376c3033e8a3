"""Progress of a Dask pass: a live bar in a terminal, a line every few seconds in a log.

Dask's bars redraw ten times a second with carriage returns, which a batch
job's log file keeps as one ever-growing line (1,256 redraws, 90 KB in the
demo's log).  Where stderr is not a terminal, the bars here write one plain
line every :data:`LOG_INTERVAL` seconds instead, and a last line when the
pass ends.  Both write to stderr (stdout keeps the results) and neither
imports tqdm, so Jupyter without ipywidgets prints no ``TqdmWarning``.
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from typing import TextIO

from dask.diagnostics import ProgressBar
from dask.utils import format_time
from distributed.diagnostics.progressbar import TextProgressBar

#: Seconds between two progress lines in a log (``FREDASK_PROGRESS_INTERVAL`` overrides).
LOG_INTERVAL = 5.0


def log_interval() -> float:
    """Seconds between progress lines in a log: ``$FREDASK_PROGRESS_INTERVAL`` or 5."""
    try:
        value = float(os.environ.get("FREDASK_PROGRESS_INTERVAL", LOG_INTERVAL))
    except ValueError:
        return LOG_INTERVAL
    return value if value >= 0 else LOG_INTERVAL


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


class LogLines:
    """Writes ``progress: 40% of 120 tasks, 12.00 s`` at most once per ``interval`` seconds.

    A pass shorter than ``interval`` writes nothing; a longer one ends with a
    ``(done)`` line.

    Parameters
    ----------
    stream : file, optional
        Default: ``sys.stderr`` at the time of each write.
    interval : float, optional
        Default: :func:`log_interval`.
    """

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream
        self.interval = log_interval() if interval is None else float(interval)
        self._last: float | None = None
        self.lines = 0

    def __call__(self, done: float, total: float, elapsed: float, final: bool = False) -> None:
        """Write a line if ``final`` or ``interval`` seconds passed since the last one."""
        if elapsed < self.interval and self._last is None:
            return  # a pass shorter than the interval writes nothing
        if not final and self._last is not None and elapsed - self._last < self.interval:
            return
        self._last = elapsed
        percent = int(100 * done / total) if total else 100
        tasks = f" of {int(total)} tasks" if total else ""
        end = " (done)" if final else ""
        stream = sys.stderr if self.stream is None else self.stream
        with suppress(ValueError, OSError):
            stream.write(f"progress: {percent}%{tasks}, {format_time(elapsed)}{end}\n")
            stream.flush()
            self.lines += 1


class LogProgressBar(ProgressBar):
    """Dask's local-scheduler :class:`~dask.diagnostics.ProgressBar`, as log lines."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        super().__init__()
        self._file = None  # Dask's bar would write its newlines to stdout
        self._lines = LogLines(stream, interval)
        self._tasks = 0

    def _update_bar(self, elapsed):
        state = self._state
        if state:
            done = len(state["finished"])
            self._tasks = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
            self._lines(done, self._tasks, elapsed)

    def _draw_bar(self, frac, elapsed):
        if frac >= 1:  # _finish: the pass is over
            self._lines(self._tasks, self._tasks, elapsed, final=True)


class LiveProgressBar(ProgressBar):
    """Dask's local-scheduler bar, drawn live on stderr."""

    def __init__(self) -> None:
        super().__init__(out=sys.stderr)


class _DistributedBar(TextProgressBar):
    """distributed's text bar on stderr: live, or as log lines (``lines`` given)."""

    def __init__(self, keys, scheduler, lines: LogLines | None = None, **kwargs) -> None:
        self._log = lines
        super().__init__(keys, scheduler, **kwargs)

    def _draw_bar(self, remaining, all, **kwargs):
        if self._log is not None:
            self._log(all - remaining, all, self.elapsed, final=kwargs.get("status") == "finished")
            return
        frac = (1 - remaining / all) if all else 1.0
        bar = "#" * int(self.width * frac)
        message = f"\r[{bar:<{self.width}}] | {int(100 * frac)}% Completed | "
        with suppress(ValueError, OSError):
            sys.stderr.write(message + format_time(self.elapsed))
            sys.stderr.flush()

    def _draw_stop(self, **kwargs):
        if self._log is None:
            with suppress(ValueError, OSError):
                sys.stderr.write("\n")
                sys.stderr.flush()


def local_progress() -> ProgressBar:
    """The context manager of a bar for a pass on Dask's local schedulers.

    Returns
    -------
    dask.diagnostics.ProgressBar
        Live on stderr in a terminal, else :class:`LogProgressBar`.
    """
    return LiveProgressBar() if is_terminal() else LogProgressBar()


def wait_with_progress(futures, address: str) -> None:
    """Show the progress of ``futures`` on the scheduler at ``address`` until they finish.

    Parameters
    ----------
    futures : distributed.Future or list of them
    address : str
        The scheduler's address.
    """
    from distributed.client import futures_of

    keys = futures_of(futures)
    lines = None if is_terminal() else LogLines()
    _DistributedBar(keys, address, lines=lines, complete=True)
