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


class WorkMeter:
    """Progress of tasks of unequal cost, with the time left estimated from the work done.

    Every finished task adds its cost; the time left is the elapsed time
    scaled by the work still to do over the work done (``elapsed * (total -
    done) / done``), so a few slow tasks (local fits of 2,048 neighbours next
    to fits of 128) do not make the estimate lie as a count of tasks would.
    Written to stderr: redrawn in place at most every :data:`REDRAW` seconds
    in a terminal, one plain line every :func:`log_interval` seconds in a log,
    and a last line when :meth:`close` is called.

    Parameters
    ----------
    costs : dict
        Cost (any unit: flops, seconds) of each task key; keys not in it
        count for nothing.
    label : str
        What the work is (``"local fits"``).
    stream : file, optional
        Default: ``sys.stderr``.
    clock : callable, optional
        Seconds since some origin (default :func:`time.perf_counter`).
    """

    #: Seconds between two redraws in a terminal.
    REDRAW = 0.5

    def __init__(self, costs: dict, label: str, stream: TextIO | None = None, clock=None) -> None:
        import time

        self.costs = dict(costs)
        self.total = float(sum(self.costs.values()))
        self.label = label
        self.stream = stream
        self._clock = clock or time.perf_counter
        self._start = self._clock()
        self._shown: float | None = None
        self.done = 0.0
        self.lines: list[str] = []

    def _terminal(self) -> bool:
        return is_terminal(sys.stderr if self.stream is None else self.stream)

    def finished(self, key) -> None:
        """Count the task ``key`` as done (once), and show the progress if due."""
        self.done += self.costs.pop(key, 0.0)
        now = self._clock() - self._start
        interval = self.REDRAW if self._terminal() else log_interval()
        if self._shown is None and now < interval:
            return
        if self._shown is not None and now - self._shown < interval:
            return
        self._shown = now
        self._write(self.line(now))

    def line(self, elapsed: float) -> str:
        """``local fits: 37% of the work, 2m 10s, about 3m 40s left``."""
        share = self.done / self.total if self.total else 1.0
        text = f"{self.label}: {int(100 * share)}% of the work, {format_time(elapsed)}"
        if 0 < share < 1:
            text += f", about {format_time(elapsed * (1 - share) / share)} left"
        return text

    def close(self) -> None:
        """Write the last line (only if a line was written before)."""
        if self._shown is not None:
            self._write(self.line(self._clock() - self._start) + " (done)", end=True)

    def _write(self, text: str, end: bool = False) -> None:
        stream = sys.stderr if self.stream is None else self.stream
        terminal = self._terminal()
        self.lines.append(text)
        with suppress(ValueError, OSError):
            if terminal:
                stream.write("\r" + text.ljust(79) + ("\n" if end else ""))
            else:
                stream.write(text + "\n")
            stream.flush()


def weighted_local_progress(meter: WorkMeter):
    """A Dask local-scheduler callback feeding ``meter`` each finished task's key."""
    from dask.callbacks import Callback

    class _Finished(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            meter.finished(key)

        def _finish(self, dsk, state, errored):
            if not errored:
                meter.close()

    return _Finished()


def wait_weighted(futures, meter: WorkMeter, client) -> None:
    """Wait for the distributed ``futures`` of ``client``, feeding ``meter`` as each finishes.

    ``client`` gives the event loop: it need not be the process's default
    client (the embedded cluster's is not).
    """
    from distributed import as_completed

    for future in as_completed(futures, loop=client.loop):
        meter.finished(future.key)
    meter.close()
