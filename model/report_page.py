"""One report, three files: the evaluation and ablation reports are written as `report.json` (the
numbers), `report.md` and a self-contained `report.html` (inline CSS, charts as data URIs), all from
the same list of blocks, and published as one folder (`publish_folder`: a reader sees the old report
or the whole new one).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from fsspec.implementations.local import LocalFileSystem

from pipelines.lake import publish_folder


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Chart:
    file: str  # a PNG in the report folder
    caption: str


@dataclass
class Section:
    heading: str
    text: list[str] = field(default_factory=list)  # paragraphs (markdown inline code and bold are kept as is)
    blocks: list[Table | Chart] = field(default_factory=list)


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        for block in section.blocks:
            if isinstance(block, Chart):
                lines += [f"![{block.caption}]({block.file})", ""]
                continue
            if block.caption:
                lines += [block.caption, ""]
            lines.append("| " + " | ".join(block.columns) + " |")
            lines.append("|" + "---|" * len(block.columns))
            lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } figcaption, .caption { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>{{ title }}</h1>
{% for section in sections %}<h2>{{ section.heading }}</h2>
{% for paragraph in section.text %}<p>{{ paragraph }}</p>
{% endfor %}{% for block in section.blocks %}{% if block.file is defined %}<figure>
<img alt="{{ block.caption }}" src="data:image/png;base64,{{ images[block.file] }}">
<figcaption>{{ block.caption }}</figcaption></figure>
{% else %}{% if block.caption %}<p class="caption">{{ block.caption }}</p>{% endif %}<table><tr>
{% for c in block.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in block.rows %}<tr>{% for v in row %}<td>{{ cell(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endif %}{% endfor %}{% endfor %}</body></html>
"""


def html(title: str, sections: list[Section], folder: Path) -> str:
    """Every chart read from `folder` and inlined; every string escaped (names and paths come from users)."""
    charts = [b.file for s in sections for b in s.blocks if isinstance(b, Chart)]
    images = {name: base64.b64encode((folder / name).read_bytes()).decode("ascii") for name in charts}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_HTML).render(title=title, sections=sections, images=images, cell=cell)


def write_report(out: str | os.PathLike[str], report: dict[str, Any], title: str, draw: Callable[[Path], list[Section]]) -> Path:
    """Publish `out/` with report.json, the PNGs `draw(folder)` writes and the sections it returns, as
    report.md and report.html."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
        sections = draw(folder)
        (folder / "report.md").write_text(markdown(title, sections))
        (folder / "report.html").write_text(html(title, sections, folder))
        publish_folder(LocalFileSystem(), tmp, str(out))
    return out
