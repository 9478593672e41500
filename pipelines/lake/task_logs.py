"""Where a datatrove task's logs go when a command asked for a quiet console.

datatrove's task logger (`datatrove.utils.logging.add_task_logger`) removes every loguru sink, then
sends the task's log to its file `<logging_dir>/logs/task_NNNNN.log` (DEBUG) and to stderr (INFO on
local rank 0); after the task `close_task_logger` puts loguru's default sink back (stderr, DEBUG).
On a console that is hundreds of lines per stage (each task's pipeline and stats table) drawn over
the progress bars, and whatever sinks the process had (a command's own log file, its console level)
are gone after the first task. datatrove offers no setting for either, so for the length of one task
`process_sinks_kept` swaps those two hooks: the task's file still gets everything, and the process's
own sinks stay as they were and decide what reaches the console.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import datatrove.executor.base as executor_base
import datatrove.utils.logging as datatrove_logging
from loguru import logger

# datatrove's own line format, so a task file reads the same as before
TASK_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | <level>{level: <8}</level> | {name}:{function}:{line} - <level>{message}</level>"


class _TaskLogFile:
    """What datatrove's `close_task_logger` closes: the task's file, and with it the sink writing there."""

    def __init__(self, file: IO[str], sink: int) -> None:
        self.file, self.sink = file, sink

    def close(self) -> None:
        logger.remove(self.sink)
        self.file.close()


def _task_file_only(logging_dir: Any, rank: int, local_rank: int = 0, node_rank: int = -1) -> _TaskLogFile:
    """`add_task_logger` without touching the process's other sinks."""
    file = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    prefix = f"[NODE {node_rank}] " if node_rank != -1 else ""
    sink = logger.add(file, colorize=False, level="DEBUG", format=prefix + TASK_FORMAT)
    logger.info(f"Launching pipeline for {rank=}")
    return _TaskLogFile(file, sink)


@contextmanager
def process_sinks_kept() -> Iterator[None]:
    """Run one datatrove task with its log going to its file and to the sinks this process already has."""
    saved = executor_base.add_task_logger, datatrove_logging.setup_default_logger
    executor_base.add_task_logger = _task_file_only
    datatrove_logging.setup_default_logger = lambda: None
    try:
        yield
    finally:
        executor_base.add_task_logger, datatrove_logging.setup_default_logger = saved


def console_sink(level: str) -> None:
    """Make loguru's only sink the console at `level` and above (a command's console; in a pool process,
    instead of datatrove's default sinks).

    The sink looks `sys.stderr` up at each message, so a rich progress display that redirects it
    prints the message above its bars.
    """
    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level=level, format=TASK_FORMAT, colorize=False)
