"""A command's logs: everything from INFO up in a file beside the lake, the console kept for what needs a reader.

lmforge, datatrove and Prefect log at INFO as they work (every task's pipeline and stats table,
every flow and task run): on a console that buried a command's summary under a thousand lines.
While a command runs, INFO and above of all three go to `<lake>/_logs/<UTC time>-<command>.log`
(for a remote lake, to the same name under the user's cache), and the console shows warnings and
errors as they happen (everything, with `-v`). datatrove's own per-task files stay where they are
(`<dataset>/_datatrove/<run>/logs/`); datatrove's pool processes log to the console at the same
level (`ExecutorConfig.console_log_level`, set by the commands).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from loguru import logger

from pipelines.lake import Lake
from pipelines.lake.task_logs import TASK_FORMAT, console_sink

LOGS = "_logs"


def console_level(verbose: bool) -> str:
    """The level from which logs reach the console."""
    return "INFO" if verbose else "WARNING"


def log_path(lake: Lake, command: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = lake.path(LOGS) if lake.is_local else os.path.join(os.path.expanduser("~"), ".cache", "lmforge", "logs")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{stamp}-{command}.log")


class UserErrorsOffConsole(logging.Filter):
    """Keep Prefect's account of a run that failed on a `UserError` (the traceback, then "Finished in
    state Failed") off the console: the command prints that error as one line, and the log file keeps
    the whole account."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_on_user_error = False

    def filter(self, record: logging.LogRecord) -> bool:
        from pipelines.common.errors import UserError

        if record.exc_info and isinstance(record.exc_info[1], UserError):
            self.failed_on_user_error = True
            return False
        return not (self.failed_on_user_error and record.levelno >= logging.ERROR and "Finished in state" in record.getMessage())


@contextmanager
def command_logs(lake_root: str | None, command: str, verbose: bool) -> Iterator[str]:
    """Send this process's logs to the command's file (INFO up) and the console (WARNING up, or INFO with `verbose`).

    Yields the file's path. Prefect's console handler and loguru's sinks are put back as they were.
    """
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # configure Prefect's handlers now, so that the levels set below stay set
    path = log_path(Lake.at(lake_root), command)
    level = console_level(verbose)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    line = "%(asctime)s.%(msecs)03d | %(levelname)-8s | %(name)s - %(message)s"  # loguru's lines, as TASK_FORMAT writes them
    file_handler.setFormatter(logging.Formatter(line, "%Y-%m-%d %H:%M:%S"))
    prefect_logger = logging.getLogger("prefect")
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    console_levels = [h.level for h in consoles]
    prefect_logger.addHandler(file_handler)
    user_errors = UserErrorsOffConsole()
    for handler in consoles:
        handler.setLevel(level)
        handler.addFilter(user_errors)
    console_sink(level)
    logger.add(path, level="INFO", format=TASK_FORMAT, colorize=False)
    try:
        yield path
    finally:
        logger.remove()
        logger.add(sys.stderr)  # loguru's default
        for handler, previous in zip(consoles, console_levels):
            handler.setLevel(previous)
            handler.removeFilter(user_errors)
        prefect_logger.removeHandler(file_handler)
        file_handler.close()
