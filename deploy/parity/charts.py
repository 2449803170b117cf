"""The parity report's charts, PNG drawn with matplotlib's Agg canvas (imported lazily; without
matplotlib there are none) and embedded as base64, so the page needs no external resource."""
from __future__ import annotations

import base64
import html
import io
from typing import Mapping

from .per_layer import LayerSection
from .metrics import PerClass
from .result import ParityResult

# Class-accuracy charts switch from grouped bars to sorted curves above this many classes.
MAX_BAR_CLASSES = 30


def matplotlib_or_none():
    """(Figure, FigureCanvasAgg), or None when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _png(fig, canvas_cls) -> str:
    canvas_cls(fig)  # Agg canvas: no display, no global pyplot state
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(b64: str, alt: str, chart_id: str) -> str:
    chart_id, alt = html.escape(chart_id, quote=True), html.escape(alt, quote=True)
    return f'<img class="chart" id="{chart_id}" alt="{alt}" src="data:image/png;base64,{b64}">'


def histogram_chart(result: ParityResult, mpl) -> str | None:
    rows = [(b, e.histogram) for b, e in result.ran().items() if e.histogram is not None and not e.is_reference]
    if not rows:
        return None
    Figure, canvas = mpl
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for b, h in rows:
        extra = f", {h.zeros} exact" if h.zeros else ""
        ax.stairs(list(h.counts), list(h.edges), label=f"{b}{extra}", linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlabel(f"|reference - backend| on {result.data.main_output}")
    ax.set_ylabel("elements")
    ax.set_title("Error histogram per backend")
    _legend(ax)
    ax.grid(alpha=.3)
    return _png(fig, canvas)


def _legend(ax) -> None:
    # Outside the axes: a legend inside hides bars at 100% and curves at the top.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def per_class_series(result: ParityResult) -> list[tuple[str, PerClass]]:
    series = []
    if result.reference.accuracy is not None:
        series.append((f"reference ({result.reference.name})", result.reference.accuracy.per_class))
    for b, e in result.ran().items():
        if e.accuracy is not None and not e.is_reference:
            series.append((b, e.accuracy.per_class))
    return series


def per_class_chart(result: ParityResult, mpl) -> str | None:
    series = per_class_series(result)
    if not series:
        return None
    Figure, canvas = mpl
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    labels = series[0][1].labels
    if len(labels) <= MAX_BAR_CLASSES:
        width = 0.8 / len(series)
        for i, (name, pc) in enumerate(series):
            ax.bar([j + i * width for j in range(len(pc.labels))], list(pc.top1), width, label=name)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], [str(c) for c in labels])
        ax.set_xlabel("class (dataset label)")
    else:
        for name, pc in series:
            ax.plot(sorted(pc.top1), label=name, linewidth=1.4)
        ax.set_xlabel("classes, sorted by top-1 accuracy")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class top-1 accuracy")
    _legend(ax)
    ax.grid(alpha=.3, axis="y")
    return _png(fig, canvas)


def _short(name: str) -> str:
    # "resnet_v2_50/block1/unit_1/bottleneck_v2" -> "block1/unit_1": the model scope and the unit
    # function name are the same on every layer.
    parts = name.split("/")
    if len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1 and parts[-1].startswith("bottleneck"):
        parts = parts[:-1]
    return "/".join(parts)


def per_layer_chart(section: Mapping[str, LayerSection], mpl) -> str | None:
    if not section:
        return None
    Figure, canvas = mpl
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot()
    names: list[str] = []
    for key, s in section.items():
        names = list(s.layers) if len(s.layers) > len(names) else names
        ys = [e.rel_error for e in s.layers.values()]
        line, = ax.plot(range(len(ys)), ys, marker=".", label=f"{key} ({s.precision})")
        kept = set(s.keep_high_precision)
        idx = [i for i, name in enumerate(s.layers) if name in kept]
        ax.scatter(idx, [ys[i] for i in idx], s=90, facecolors="none", edgecolors=line.get_color(),
                   linewidths=2, zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("relative error ||a-b|| / ||a||")
    ax.set_title("Error per layer vs FP32 (circled: keep in high precision)")
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=90, fontsize=7)
    else:
        ax.set_xlabel("layer index (network order)")
    _legend(ax)
    ax.grid(alpha=.3)
    return _png(fig, canvas)
