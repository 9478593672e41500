"""Process-wide defaults the CLI sets before Prefect is imported (DESIGN §8)."""

from __future__ import annotations

import os

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
