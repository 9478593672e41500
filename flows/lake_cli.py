"""`lmforge lake gc`: the lake's housekeeping commands, and how their results are printed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.console import LakeOption, err, fail, out, rich_table, user_errors

lake_app = typer.Typer(help="Look after the lake: remove what killed or replaced runs left behind.", no_args_is_help=True)


def _relative(plan: Any, path: str, where: str = "") -> str:
    """`path` within the lake, or within `where` (a dataset or lake folder) when it lies there."""
    inside = path.removeprefix(plan.lake).lstrip("/")
    return inside.removeprefix(f"{where}/") if where else inside


def print_plan(plan: Any, removed: list[Any] | None) -> None:
    """The orphans (to remove, or removed), the runs left alone and why, the files no run wrote."""
    orphans = plan.orphans if removed is None else removed
    verb = "would be removed (dry run)" if removed is None else "removed"
    if orphans:
        table = rich_table(
            f"files of runs no manifest lists: {verb}",
            ["run", "in", "what", "path", "MB"],
            [(o.run, o.where, o.kind, _relative(plan, o.path, o.where), f"{o.bytes / 1e6:.2f}") for o in orphans],
        )
        table.columns[0].no_wrap = True
        table.columns[3].overflow = "fold"
        out.print(table)
    if plan.skipped:
        skipped = [(s.run, s.reason) for s in plan.skipped]
        out.print(rich_table("runs left alone: they may still be running", ["run", "why"], skipped))
    for path in plan.unrecognised:
        err.print(f"left alone, no lmforge run wrote it: {_relative(plan, path)}", highlight=False, soft_wrap=True)
    runs = len({o.run for o in orphans})
    what = f"{len(orphans)} paths ({runs} run{'s' * (runs != 1)}, {sum(o.bytes for o in orphans) / 1e6:.1f} MB)"
    if not orphans:
        out.print("nothing to remove: every run in the lake is listed or may still be running", highlight=False)
    elif removed is None:
        out.print(f"{what}: run without --dry-run to remove them", highlight=False)
    else:
        out.print(f"removed {what}", highlight=False)


@lake_app.command("gc")
def gc(
    lake: LakeOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed; remove nothing")] = False,
    grace_minutes: Annotated[
        float, typer.Option("--grace-minutes", help="leave a run whose files changed this recently: it may still be writing")
    ] = 60.0,
) -> None:
    """Remove the shards, staging files and work folders of runs no manifest lists (killed or replaced runs).

    A listed run is never touched, nor a file no lmforge run wrote; a run holding its lock, or whose
    files changed within the grace period, is left alone and named with the reason.
    """
    from pipelines.lake import Lake
    from pipelines.lake.gc import apply_gc, plan_gc

    if grace_minutes < 0:
        fail("--grace-minutes must not be negative")
    where = Lake.at(lake)
    with user_errors():
        plan = plan_gc(where, grace_minutes)
        print_plan(plan, None if dry_run else apply_gc(where, plan))
