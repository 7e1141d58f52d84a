"""What a running training job tells the person watching it: progress lines and TensorBoard.

Several trainings run at once under Snakemake and share one console, so every progress line
starts with the job's name in brackets (``[texture-k8-alexnet]``, ``[random-resnet18 all
seed0]``; the name is an argument of the training functions, given by the rule's adapter) and
ends with the time the job still needs, estimated from the rate measured so far in this process
(:class:`Eta`: ``ETA 3m12s``).

When the ``tensorboard`` package is installed (it is not a dependency), a training also writes
its history as TensorBoard scalars into a folder beside its other files (:class:`EventLog`).
The folder always mirrors the history the training holds: opening it removes the event files
of earlier runs and writes the history so far again, so a run resumed from a checkpoint
continues its curves with each step once, even when the killed run had written steps beyond
that checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

EVENT_FILE_PATTERN = "events.out.tfevents.*"


def format_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m`` (hours without an upper bound: ``51h00m``); rounded down."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta_seconds(done: int, remaining: int, elapsed: float) -> float:
    """Seconds for ``remaining`` units at the rate of ``done`` units in ``elapsed`` seconds
    (infinite while nothing is done yet and something remains)."""
    if remaining <= 0:
        return 0.0
    if done <= 0 or elapsed <= 0:
        return math.inf
    return remaining * elapsed / done


class Eta:
    """Remaining time of a job of ``total`` units (steps, iterations) of which ``start`` were
    done before this process began (a resumed run): the rate is measured on the units done
    here, from the moment the object is made. ``clock``: seconds, monotonic."""

    def __init__(self, total: int, start: int = 0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.start, self.clock = total, start, clock
        self.began = clock()

    def __call__(self, done: int) -> str:
        """``ETA 3m12s`` once ``done`` of the ``total`` units are finished."""
        seconds = eta_seconds(done - self.start, self.total - done, self.clock() - self.began)
        return f"ETA {format_duration(seconds)}"


def _scalars(row: dict, step_key: str) -> dict[str, float]:
    """The numbers of a history row, except its step (booleans, text and None left out)."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != step_key and isinstance(value, int | float) and not isinstance(value, bool)
    }


class EventLog:
    """A training history as TensorBoard scalars in a folder, one tag per numeric key of a row,
    at the step ``row[step_key]`` (``epoch``, ``iteration``). Made by :meth:`open`; a context
    manager that closes its writer. Without a writer (no folder, or no ``tensorboard``) every
    call does nothing."""

    def __init__(self, writer, step_key: str) -> None:
        self.writer, self.step_key = writer, step_key

    @classmethod
    def open(cls, folder: str | Path | None, history: Sequence[dict], step_key: str) -> EventLog:
        """The event log of ``folder`` holding exactly ``history`` (earlier event files removed,
        the rows written again, wall times spaced by their ``seconds`` when they have them); one
        that writes nothing when ``folder`` is None or ``tensorboard`` is not installed."""
        if folder is None:
            return cls(None, step_key)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: no event files in %s", folder)
            return cls(None, step_key)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(EVENT_FILE_PATTERN):
            stale.unlink()
        events = cls(SummaryWriter(log_dir=str(folder)), step_key)
        durations = [float(row.get("seconds") or 0.0) for row in history]
        walltime = time.time() - sum(durations)
        for row, seconds in zip(history, durations, strict=True):
            walltime += seconds
            events.add(row, walltime=walltime, flush=False)
        events.writer.flush()
        return events

    def add(self, row: dict, walltime: float | None = None, flush: bool = True) -> None:
        """Write the numbers of ``row`` at its step; flushed, so that a killed job keeps them."""
        if self.writer is None:
            return
        step = int(row[self.step_key])
        for tag, value in _scalars(row, self.step_key).items():
            self.writer.add_scalar(tag, value, global_step=step, walltime=walltime)
        if flush:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _NamedJob(logging.LoggerAdapter):
    """Prefixes every message with ``[job name]``."""

    def process(self, msg, kwargs):
        return f"[{self.extra['job']}] {msg}", kwargs


def job_logger(logger: logging.Logger, job_name: str) -> logging.LoggerAdapter:
    """``logger`` with every message prefixed by ``[job_name]``, so that the lines of jobs
    that share a console tell which job they come from."""
    return _NamedJob(logger, {"job": job_name})
