"""The report's PNG charts, and the per-language figures they and the tables are built from.

Charts are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot: no global figure
state, no display needed, safe in worker threads. Only English names and FLORES codes go into charts, because
matplotlib's default font (DejaVu Sans) lacks most of the scripts measured here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from tokenizer_training.languages import language_label

CURRENCY_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹"}


LOG_SCALE_RATIO = 8.0
"""Above this max/min ratio a chart uses a log x axis (see `_use_log_scale`)."""


MAX_ANNOTATED_BARS = 160
"""Beyond this many bars the value labels would overlap; the axis alone has to do."""


Worst = Literal["high", "low"]


def tokenizers_of(report: dict) -> dict[str, dict]:
    return report.get("tokenizers") or {}


def metric_table(report: dict, section: str, metric: str) -> dict[str, dict[str, float]]:
    """language -> tokenizer -> value of `metric` in `section` ("languages" or "heldout"), skipping missing values.

    Languages keep the order in which they first appear, tokenizers the report's order.
    """
    table: dict[str, dict[str, float]] = {}
    for name, tok in tokenizers_of(report).items():
        for lang, stats in (tok.get(section) or {}).items():
            value = stats.get(metric)
            if value is not None and math.isfinite(value):
                table.setdefault(lang, {})[name] = float(value)
    return table


def sorted_languages(values: dict[str, dict[str, float]], worst: Worst) -> list[str]:
    """Languages ordered worst first, judged by each language's worst value over all tokenizers.

    `worst="high"` (premium, cost): sort by the *maximum* over tokenizers, descending. `worst="low"`
    (bytes/token): sort by the *minimum*, ascending. The worst case over tokenizers, rather than the first
    tokenizer's value, keeps the order independent of the order tokenizers were listed in, and puts the
    languages that some tokenizer treats badly at the top, where the eye lands. Ties break on the code.
    """
    present = {lang: by_tok for lang, by_tok in values.items() if by_tok}
    if worst == "high":
        return sorted(present, key=lambda lang: (-max(present[lang].values()), lang))
    return sorted(present, key=lambda lang: (min(present[lang].values()), lang))


def premium_order(report: dict) -> list[str]:
    """Aligned languages, highest premium (under any tokenizer) first: the order of the premium chart and table."""
    return sorted_languages(metric_table(report, "languages", "premium"), worst="high")


def times_label(value: float) -> str:
    return f"{value:.1f}×"


def money(value: float | None, currency: str) -> str:
    if value is None:
        return "—"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {currency}"


def price_text(report: dict) -> str:
    price = float(report.get("price_per_1m_tokens", 1.0))
    return f"{money(price, report.get('currency', 'USD'))} per 1M tokens"


@dataclass(frozen=True)
class BarChart:
    """A horizontal grouped bar chart: one group per language (top to bottom), one bar per tokenizer."""

    title: str
    xlabel: str
    languages: list[str]
    series: dict[str, list[float]]
    """tokenizer -> one value per language, NaN where the tokenizer has none."""
    colors: dict[str, Any]
    value_label: Callable[[float], str]
    tick_label: Callable[[float], str]
    parity: float | None = None
    parity_label: str = ""
    subtitle: str = ""
    allow_log: bool = True
    """Whether a wide range may switch the x axis to log (see `_use_log_scale`); off for bounded figures."""


def _plain(text: str) -> str:
    """Escape '$' so user strings (tokenizer names, prices) never switch matplotlib into mathtext."""
    return text.replace("$", r"\$")


def _tokenizer_colors(report: dict) -> dict[str, Any]:
    """One colour per tokenizer, the same in every chart (report order; tab10, tab20 beyond ten tokenizers)."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(tokenizers_of(report)) <= 10 else "tab20"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(tokenizers_of(report))}


def _use_log_scale(values: Iterable[float]) -> bool:
    """Log x when the largest value is more than 8× the smallest (premiums reach ~15× for r50k on Shan).

    On a linear axis that range squeezes the 1-2× band, where most languages sit, into a sliver; on a log axis
    equal ratios take equal space, so "twice English" looks the same wherever it is, and the parity line at 1×
    stays clear of the axis edge.
    """
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > LOG_SCALE_RATIO


def _nice_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between low and high, for a log axis (matplotlib's defaults show only powers of ten)."""
    ticks = []
    for exponent in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            tick = mantissa * 10.0**exponent
            if low <= tick <= high:
                ticks.append(tick)
    return ticks


LEGEND_COLUMNS = 5


def _header_inches(legend_entries: int) -> float:
    """Band at the top of a chart for title, subtitle and legend (one 0.22 in row per 5 entries).

    Placed by hand, outside the layout engine: constrained layout stacks a suptitle and an "outside" legend on
    top of each other.
    """
    return 0.78 + 0.22 * math.ceil(legend_entries / LEGEND_COLUMNS)


def _figure_height(n_languages: int, n_tokenizers: int, header: float) -> float:
    """Height grows with the bars so each bar stays readable (~0.12 in per bar plus the gap between groups)."""
    return header + 0.9 + n_languages * (0.12 * n_tokenizers + 0.14)


def render_bar_chart(chart: BarChart, path: Path) -> Path:
    """Draw `chart` to a PNG at `path` (Agg canvas, no pyplot) and return the path."""
    names = list(chart.series)
    n, k = len(chart.languages), len(names)
    values = [v for series in chart.series.values() for v in series if math.isfinite(v)]
    log = chart.allow_log and _use_log_scale(values)
    header = _header_inches(k + (chart.parity is not None))
    height = _figure_height(n, k, header)
    fig = Figure(figsize=(10, height))
    fig.set_layout_engine("constrained", rect=(0, 0, 1, 1 - header / height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = max(values)
    if log:
        left = min(min(values), chart.parity or math.inf) / 1.35
        right = top * 1.45  # room for the value labels right of the longest bar
        ax.set_xscale("log")
    else:
        left, right = 0.0, top * 1.16
    bar_height = 0.8 / k
    annotate = n * k <= MAX_ANNOTATED_BARS
    for j, name in enumerate(names):
        offsets = [i - 0.4 + bar_height * (j + 0.5) for i in range(n)]
        widths = [v - left if math.isfinite(v) else math.nan for v in chart.series[name]]
        ax.barh(offsets, widths, height=bar_height * 0.92, left=left, color=chart.colors[name], label=_plain(name))
        if annotate:
            for y, v in zip(offsets, chart.series[name]):
                if math.isfinite(v):
                    x = v * 1.03 if log else v + top * 0.008
                    ax.text(x, y, _plain(chart.value_label(v)), va="center", ha="left", fontsize=7, color="0.2")
    if chart.parity is not None:
        ax.axvline(chart.parity, color="0.25", linestyle="--", linewidth=1.1, label=chart.parity_label, zorder=3)
    ax.set_xlim(left, right)
    if log:
        ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(left, right)))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _plain(chart.tick_label(v))))
    ax.set_yticks(range(n), [_plain(language_label(lang)) for lang in chart.languages], fontsize=9)
    ax.set_ylim(n - 0.5, -0.5)  # worst first: the first language at the top
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(chart.xlabel)
    inch = 1 / height  # figure fraction per inch, to place the header band's rows at fixed heights
    fig.text(0.015, 1 - 0.12 * inch, _plain(chart.title), ha="left", va="top", fontsize=12, fontweight="bold")
    if chart.subtitle:
        fig.text(0.015, 1 - 0.42 * inch, _plain(chart.subtitle), ha="left", va="top", fontsize=9, color="0.35")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(0.005, 1 - 0.62 * inch),
        frameon=False,
        ncols=LEGEND_COLUMNS,
        fontsize=9,
        borderaxespad=0,
        handlelength=1.6,
    )
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return path


def _section_chart(report: dict, section: str, metric: str, worst: Worst, **chart: Any) -> BarChart | None:
    """A BarChart of `metric` in `section`, languages worst first; None when there is nothing to draw."""
    table = metric_table(report, section, metric)
    languages = sorted_languages(table, worst)
    if not languages:
        return None
    names = [name for name in tokenizers_of(report) if any(name in table[lang] for lang in languages)]
    series = {name: [table[lang].get(name, math.nan) for lang in languages] for name in names}
    return BarChart(languages=languages, series=series, colors=_tokenizer_colors(report), **chart)


def plot_premium(report: dict, path: Path) -> Path | None:
    """Premium vs English on aligned text, worst language at the top; None (no file) without aligned text."""
    chart = _section_chart(
        report,
        "languages",
        "premium",
        "high",
        title="Tokens needed for the same text, relative to English",
        subtitle="aligned (translated) text; longer bar = the language pays more",
        xlabel="tokens relative to English (premium)",
        value_label=times_label,
        tick_label=lambda v: f"{v:g}×",
        parity=1.0,
        parity_label="parity with English",
    )
    return render_bar_chart(chart, path) if chart else None


def _plot_bytes_per_token(report: dict, path: Path, section: str, subtitle: str) -> Path | None:
    chart = _section_chart(
        report,
        section,
        "bytes_per_token",
        "low",
        title="Compression: UTF-8 bytes per token (higher = better)",
        subtitle=subtitle,
        xlabel="UTF-8 bytes per token (higher = fewer tokens for the same bytes)",
        value_label=lambda v: f"{v:.2f}",
        tick_label=lambda v: f"{v:g}",
        allow_log=False,  # bytes/token stays within ~0.5-10: a linear axis keeps "twice the bar = twice the compression"
    )
    return render_bar_chart(chart, path) if chart else None


def plot_bytes_per_token(report: dict, path: Path) -> Path | None:
    """Bytes/token on aligned text, worst-compressed language at the top; None without aligned text."""
    return _plot_bytes_per_token(report, path, "languages", "aligned (translated) text; worst-compressed language at the top")


def plot_heldout_bytes_per_token(report: dict, path: Path) -> Path | None:
    """Bytes/token on the lake's held-out documents (languages without aligned text); None when there are none."""
    return _plot_bytes_per_token(
        report, path, "heldout", "the lake's held-out documents (languages without aligned text); worst at the top"
    )


def plot_cost(report: dict, path: Path) -> Path | None:
    """Cost of the same content as 1M English words, per language and tokenizer; None without aligned text."""
    currency = report.get("currency", "USD")
    chart = _section_chart(
        report,
        "languages",
        "cost_per_1m_english_words",
        "high",
        title=f"Cost of the same content as 1M English words (price: {price_text(report)})",
        subtitle="aligned (translated) text; most expensive language at the top",
        xlabel=f"cost in {currency} for the content of 1M English words",
        value_label=lambda v: money(v, currency),
        tick_label=lambda v: money(v, currency).removesuffix(".00"),
    )
    return render_bar_chart(chart, path) if chart else None


CHART_FILES: dict[str, str] = {
    "premium": "premium.png",
    "bytes_per_token": "bytes_per_token.png",
    "cost": "cost.png",
    "heldout_bytes_per_token": "heldout_bytes_per_token.png",
}


def write_charts(report: dict, folder: Path) -> dict[str, Path]:
    """Draw every chart that has data into `folder`; chart key -> PNG path. Empty charts are skipped, not drawn."""
    plots: dict[str, Callable[[dict, Path], Path | None]] = {
        "premium": plot_premium,
        "bytes_per_token": plot_bytes_per_token,
        "cost": plot_cost,
        "heldout_bytes_per_token": plot_heldout_bytes_per_token,
    }
    charts = {}
    for key, plot in plots.items():
        path = plot(report, folder / CHART_FILES[key])
        if path is not None:
            charts[key] = path
    return charts
