"""What every `lmforge` command shares: the consoles, the `--lake` option, one-line errors, tables, typed settings."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)

LakeOption = Annotated[
    Optional[str],
    typer.Option("--lake", help="lake root: a folder or an fsspec URL (default: $LMFORGE_LAKE or ./lake)"),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="show datatrove's and Prefect's INFO logs on the console too")
]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad paths, missing model, an empty lake…) into one line and exit code 1."""
    from pipelines.common.errors import UserError
    from pipelines.lake.executors import PipelineSubmitted

    try:
        yield
    except UserError as e:
        fail(str(e))
    except PipelineSubmitted as e:  # a Slurm run is queued: not an error, nothing to summarise yet
        out.print(str(e), highlight=False, soft_wrap=True)
        raise typer.Exit(0) from None


@contextmanager
def running(lake: str | None, command: str, verbose: bool) -> Iterator[str]:
    """What a command that runs flows wraps them in: the Prefect API its runs are recorded on
    (`flows.prefect_api`), its log file (`flows.logs`) and the stages' progress bars.

    Yields the log file's path; the command prints it with its summary (`print_logs`), and if the
    command fails it is printed here, before the error.
    """
    from flows.logs import command_logs
    from flows.prefect_api import flow_runs_recorded
    from flows.progress import live_progress

    with flow_runs_recorded(), command_logs(lake, command, verbose) as path:
        try:
            with live_progress(err):
                yield path
        except BaseException:
            print_logs(path)
            raise


def print_logs(path: str) -> None:
    out.print(f"logs: {path} (datatrove's per-task logs: <dataset>/_datatrove/<run>/logs/)", highlight=False, soft_wrap=True)


def rich_table(title: str, columns: list[str], rows: list[tuple | list]) -> Table:
    # as wide as its title, so a long title stays one line over a narrow table
    table = Table(title=title, title_justify="left", header_style="bold", min_width=len(title))
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    return table


def settings(schema: Any, /, **values: Any) -> Any:
    """A typed config from CLI values; a value out of range is one line, not a traceback."""
    from pydantic import ValidationError

    try:
        return schema(**values)
    except ValidationError as e:
        fail("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))
