"""Data that ships with lmforge, by a name any command that reads instructions or chats accepts, from
any folder: `seed-tasks`, the 38 human-written seed tasks in Self-Instruct's format (instruction, instances).

Why a name and not only the path: the seeds are the one instruction data a fresh lake is sure to have
(a small model's Self-Instruct run may keep none of its tasks), so `lmforge synth preferences
--instructions synthetic/self_instruct,seed-tasks` or `lmforge train sft --data …,seed-tasks` work
wherever lmforge is installed.
"""

from __future__ import annotations

from pathlib import Path

SEED_TASKS = Path(__file__).resolve().parents[1] / "synthetic" / "seeds" / "seed_tasks.jsonl"

BUNDLED: dict[str, Path] = {"seed-tasks": SEED_TASKS}


def bundled_path(source: str) -> str:
    """The file a bundled name stands for; any other source as it is."""
    return str(BUNDLED[source]) if source in BUNDLED else source
