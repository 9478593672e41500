"""Reading a user's JSONL file: one object per line, blank lines skipped, a bad line named by its number."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.common.errors import UserError


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not JSON ({e.msg})") from None
    return rows
