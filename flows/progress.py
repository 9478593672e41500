"""A progress bar for a datatrove run, drawn from the task markers datatrove writes as tasks finish."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from fsspec.core import url_to_fs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def finished_tasks(logging_dirs: list[str]) -> int:
    done = 0
    for logging_dir in logging_dirs:
        fs, path = url_to_fs(logging_dir)
        completions = f"{path}/completions"
        done += len(fs.ls(completions, detail=False)) if fs.exists(completions) else 0
    return done


@contextmanager
def task_progress(console: Console, label: str, logging_dirs: list[str], tasks: int) -> Iterator[None]:
    """Show `label` with finished/total tasks of one or more datatrove stages while the body runs (polled twice a second)."""
    stop = threading.Event()
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        job = bar.add_task(label, total=tasks, completed=finished_tasks(logging_dirs))

        def poll() -> None:
            while not stop.wait(0.5):
                bar.update(job, completed=finished_tasks(logging_dirs))

        watcher = threading.Thread(target=poll, name="task-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            bar.update(job, completed=finished_tasks(logging_dirs))
