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


def rich_table(title: str, columns: list[str], rows: list[tuple | list]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    return table


def settings(model: Any, **values: Any) -> Any:
    """A typed config from CLI values; a value out of range is one line, not a traceback."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as e:
        fail("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))
