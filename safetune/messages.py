"""What a running command tells its user on stderr: one line when a stage starts and one when it
ends with what it found (logging, so that the Python API stays quiet unless its caller configures
logging), and a hint when the machine is too busy for torch's threads."""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("safetune")
_busy_checked = False


class _Stderr(logging.StreamHandler):
    """Writes to the sys.stderr of the moment: callers and tests redirect it after start-up."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class _Format(logging.Formatter):
    """'12:03:41 align esd-x: ...' for stage messages; 'safetune: warning: ...' for warnings."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"safetune: warning: {record.getMessage()}"
        return f"{self.formatTime(record, '%H:%M:%S')} {record.getMessage()}"


def configure(verbosity: int) -> None:
    """-1: warnings only (--quiet); 0: stage messages (the default); 1: details and library notices
    too (--verbose)."""
    logger = logging.getLogger("safetune")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_Format())
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG)
    logging.basicConfig(level=logging.INFO if verbosity > 0 else logging.WARNING, format="%(message)s")


def warn_if_busy() -> None:
    """Once per process, when work starts: with more runnable threads than cores (another job is
    running), torch's threads fight and every job runs several times slower."""
    global _busy_checked
    if _busy_checked:
        return
    _busy_checked = True
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return
    import torch

    cores = os.cpu_count() or 1
    if load > cores and torch.get_num_threads() > 1:
        log.warning("the machine is busy (load %.1f on %d cores): torch's threads will fight the other jobs' and "
                    "everything runs several times slower; give each job --threads 1 (or OMP_NUM_THREADS=1)",
                    load, cores)


def progress_interval() -> float:
    """Seconds between progress-bar updates: live on a terminal; once a minute into a log file,
    where every update is a line kept forever (a study's log grew by 0.5 MB an hour of bars)."""
    return 0.1 if sys.stderr.isatty() else 60.0
