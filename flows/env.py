"""Process-wide defaults the CLI sets before Prefect is imported (DESIGN §8), and where the reference data is."""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_DEFAULTS = {
    # Prefect phones home on import unless told not to; offline, that costs ~13 s per command.
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    # The ephemeral server starts in 7-12 s on a 2-core machine; Prefect's default wait is tighter.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def quiet_offline_defaults() -> None:
    """Set the defaults above unless the user chose otherwise."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


REFERENCE_DATA = "../shared/data"  # where the team keeps reference tokenizers and FLORES (see its README)
REFERENCE_TOKENIZERS = ("r50k_base.tiktoken", "o200k_base.tiktoken")


def reference_inputs(folder: Path) -> tuple[list[str], str | None]:
    """The reference tokenizers and aligned text `lmforge run` compares against, where present."""
    tokenizers = [str(folder / "tokenizers" / name) for name in REFERENCE_TOKENIZERS if (folder / "tokenizers" / name).is_file()]
    parallel = folder / "flores200-dev"
    return tokenizers, str(parallel) if parallel.is_dir() else None


def aligned_text(given: Path | None) -> str | None:
    """The aligned text a command measures on: the folder given, else the reference FLORES when present."""
    return str(given) if given else reference_inputs(Path(REFERENCE_DATA))[1]
