"""`lmforge release DATASET… --repo OWNER/NAME`: a Hub-ready folder of lake datasets, uploaded unless `--dry-run`."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, out, print_logs, rich_table, running, user_errors


def print_release(built: Any, repo: str) -> None:
    rows = [[c.name, c.rows, f"{c.bytes / 1e6:.2f}", len(c.files)] for c in built.configs]
    out.print(rich_table(f"release {repo}: {built.folder}", ["config", "rows", "MB", "files"], rows))
    out.print(f"card: {built.folder}/README.md", highlight=False, soft_wrap=True)
    if built.uploaded is None:
        out.print(f"dry run: nothing uploaded (without --dry-run it goes to {repo})", highlight=False, soft_wrap=True)
    else:
        up = built.uploaded
        tag = f", tag {up.tag}" if up.tag else ""
        out.print(f"uploaded: {up.url} (commit {up.commit[:12]}{tag})", highlight=False, soft_wrap=True)


def release(
    datasets: Annotated[
        list[str],
        typer.Argument(
            help="catalog names: documents, documents_clean, wrap, self_instruct, preferences, best_of_n, pretrain_mix"
        ),
    ],
    repo: Annotated[str, typer.Option("--repo", help="the Hub dataset repo, OWNER/NAME")],
    out_dir: Annotated[
        Optional[str], typer.Option("--out", help="the folder to build (default: <lake>/releases/<repo name>/)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="build and check the folder, upload nothing")] = False,
    private: Annotated[bool, typer.Option("--private", help="create the repo private")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="tag the release's commit (e.g. v1)")] = None,
    license: Annotated[
        str,
        typer.Option("--license", help="Hub licence id for the card (default: other; the sources keep their own licences)"),
    ] = "other",
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Release lake datasets to the Hugging Face Hub: a dataset card with a config per dataset and language,
    parquet under data/, refused unless validated (and PII-redacted, for documents). Token: HF_TOKEN or `hf auth login`."""
    from pipelines.lake import Lake
    from pipelines.release import check_release

    with user_errors():  # a refusal is one line before Prefect starts (or is even imported)
        check_release(Lake.at(lake), datasets, repo, dry_run)
    from flows.release import release_flow

    with user_errors(), running(lake, "release", verbose) as logs:
        built = release_flow(datasets, repo, lake, out_dir, dry_run=dry_run, private=private, revision=revision, license=license)
    print_release(built, repo)
    print_logs(logs)
