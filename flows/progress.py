"""Progress bars for a command: one per stage, with rate and time left, shown while a command runs.

A CLI command opens `live_progress` around its flow; each flow opens a bar for its stage
(`stage_bar` for work it counts itself, `task_bar` for a datatrove run, drawn from the task
markers datatrove writes as tasks finish). Outside a command (a deployment, a test calling a flow)
there is no live display and the bars cost nothing. Finished bars stay on screen: together they
are the short account of what ran, and how long each stage took.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fsspec.core import url_to_fs
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

_live: Progress | None = None


class RateColumn(ProgressColumn):
    """Units per second of one bar (rich has this only for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class DoneColumn(ProgressColumn):
    """done/total, with a decimal where the amounts are small fractions (a few MB)."""

    def render(self, task: Task) -> Text:
        total = task.total
        small = total is not None and total < 100 and not float(total).is_integer()
        shown = (lambda n: f"{n:.1f}") if small else (lambda n: f"{int(n):,}")
        return Text(f"{shown(task.completed)}/{'?' if total is None else shown(total)}", style="progress.download")


class LeftColumn(ProgressColumn):
    """Time left while a bar runs (once known); nothing once it is done, when the elapsed time says it all."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if task.finished or left is None:
            return Text("")
        return Text(f"{int(left) // 60}:{int(left) % 60:02d} left", style="progress.remaining")


@contextmanager
def live_progress(console: Console) -> Iterator[None]:
    """Show the bars the flows open while the body runs; what is printed to stderr meanwhile appears above them.

    Sized for an 80-column terminal: label, bar, done/total and unit, rate, elapsed, time left.
    """
    global _live
    columns = (
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=12),
        DoneColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[unit]}", table_column=Column(no_wrap=True)),
        RateColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(),
        LeftColumn(table_column=Column(no_wrap=True)),
    )
    with Progress(*columns, console=console, redirect_stderr=True, redirect_stdout=False) as progress:
        _live = progress
        try:
            yield
        finally:
            _live = None


@contextmanager
def stage_bar(label: str, total: float | None, unit: str) -> Iterator[Callable[..., None]]:
    """A bar for one stage; the body reports `(done, total=None, note=None)` (absolute amounts; `note`, a
    few words after the label such as a loss) through the function it gets."""
    progress = _live
    if progress is None:
        yield lambda done, total=None, note=None: None
        return
    bar = progress.add_task(label, total=total, unit=unit)

    def update(done: float, total: float | None = None, note: str | None = None) -> None:
        changes = ({"total": total} if total is not None else {}) | ({"description": f"{label} {note}"} if note else {})
        progress.update(bar, completed=done, **changes)

    try:
        yield update
    finally:
        progress.stop_task(bar)  # its clock stops: the bar now says how long the stage took


def finished_tasks(logging_dirs: list[str]) -> int:
    done = 0
    for logging_dir in logging_dirs:
        fs, path = url_to_fs(logging_dir)
        completions = f"{path}/completions"
        done += len(fs.ls(completions, detail=False)) if fs.exists(completions) else 0
    return done


@contextmanager
def task_bar(label: str, logging_dirs: list[str], tasks: int) -> Iterator[None]:
    """A stage bar counting the finished tasks of one or more datatrove stages (polled twice a second)."""
    with stage_bar(label, tasks, "tasks") as update:
        update(finished_tasks(logging_dirs))
        if _live is None:
            yield
            return
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(0.5):
                update(finished_tasks(logging_dirs))

        watcher = threading.Thread(target=poll, name="task-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            update(finished_tasks(logging_dirs))
