"""A self-contained HTML report of a filtered run: counts, score histograms, sample gallery.

``write_report(FILTERED_DIR)`` reads the kept rows (``data/``), the rejected rows
(``rejected/``) and ``manifest.json`` of a ``forge filter`` run and writes, under
``FILTERED_DIR/report`` by default::

    counts.json      rows, kept, rejected, kept ratio, rejections per check (+ manifest check)
    counts.md        the same as a Markdown table
    scores.json      per score column: non-null count, min, mean, max for kept and rejected
    samples.json     the keys shown in the gallery
    histograms/score_<check>.png
    index.html       one file, nothing external: images are base64 data URIs

Every pass streams record batches, so memory stays bounded whatever the size of the run:
the counts and score statistics read only ``reject_reasons`` and the score columns, the
histograms are binned batch by batch on edges fixed by a first pass, and the gallery picks
its rows by position (a seeded uniform sample) and converts only those rows to Python.

The HTML pieces (:func:`html_page`, :func:`image_card`, :func:`histogram_png`,
:func:`table_html`, :func:`stat_tiles`, ...) are public so other reports can reuse them.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .images import ImageError, open_rgb
from .schema import CHECKS
from .store import RunDir

KEPT, REJECTED = "data", "rejected"
SPLITS = {"kept": KEPT, "rejected": REJECTED}
HIST_BINS = 30
THUMB_SIDE = 256
KEPT_COLOUR, REJECTED_COLOUR = "#2e7d32", "#c62828"

#: Text facets shown on a card (list facets follow), in the order a reader wants them.
TEXT_FACETS = ("short_caption", "layout", "style", "composition", "step_by_step")
LIST_FACETS = (
    "tags",
    "paraphrases",
    "varied_captions",
    "object_prompts",
    "object_centric",
    "region_descriptions",
)


# --------------------------------------------------------------------------------------
# Reading the run
# --------------------------------------------------------------------------------------


def reason_check(reason: str) -> str:
    """The check named by a reject reason: the text before the first colon
    (``"repetition: 41% of 3-grams repeated"`` -> ``"repetition"``); ``"other"`` if none."""
    name, sep, _ = reason.partition(":")
    name = name.strip()
    return name if sep and name and " " not in name else "other"


def _columns(run: RunDir, subdir: str) -> list[str]:
    """Column names of ``subdir``'s shards (from the first shard's footer)."""
    shards = run.shards(subdir)
    if not shards:
        return []
    with run.fs.open(shards[0], "rb") as f:
        return list(pq.ParquetFile(f).schema_arrow.names)


def score_columns(names: Iterable[str]) -> list[str]:
    """The ``score_*`` columns among ``names``: the known checks in CHECKS order, then any
    others alphabetically."""
    present = {n for n in names if n.startswith("score_")}
    known = [f"score_{c}" for c in CHECKS if f"score_{c}" in present]
    return known + sorted(present - set(known))


def _finite(column: pa.Array) -> np.ndarray:
    """A numeric Arrow column as float64 with nulls, NaN and infinities removed."""
    arr = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return arr[np.isfinite(arr)]


@dataclass
class ScoreStats:
    """Running statistics of one score column in one split."""

    n: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    integral: bool = True  # every value is a whole number (counts, word lengths, ...)

    def add(self, values: np.ndarray) -> None:
        if not values.size:
            return
        self.n += int(values.size)
        self.total += float(values.sum())
        self.lo = min(self.lo, float(values.min()))
        self.hi = max(self.hi, float(values.max()))
        self.integral = self.integral and bool(np.all(values == np.round(values)))

    def as_dict(self) -> dict[str, Any]:
        if not self.n:
            return {"n": 0, "min": None, "mean": None, "max": None}
        return {"n": self.n, "min": self.lo, "mean": self.total / self.n, "max": self.hi}


@dataclass
class RunSummary:
    """What one streaming pass over ``reject_reasons`` and the score columns learns."""

    rows: dict[str, int] = field(default_factory=lambda: {"kept": 0, "rejected": 0})
    by_check: Counter = field(default_factory=Counter)
    rejected_without_reason: int = 0
    kept_with_reasons: int = 0
    scores: dict[str, dict[str, ScoreStats]] = field(default_factory=dict)


def summarise(run: RunDir, columns: dict[str, list[str]], batch_size: int = 4096) -> RunSummary:
    """Count rows and rejections per check, and gather score statistics, streaming only
    ``reject_reasons`` and the score columns."""
    summary = RunSummary()
    for split, subdir in SPLITS.items():
        names = columns[subdir]
        scores = score_columns(names)
        wanted = scores + (["reject_reasons"] if "reject_reasons" in names else [])
        if not wanted:  # nothing to read but the row count (from the shard footers)
            summary.rows[split] += run.count_rows(subdir)
            if split == "rejected":
                summary.rejected_without_reason += run.count_rows(subdir)
            continue
        for batch in run.iter_batches(subdir, columns=wanted, batch_size=batch_size):
            summary.rows[split] += batch.num_rows
            if "reject_reasons" in names:
                for reasons in batch.column("reject_reasons").to_pylist():
                    if split == "rejected":
                        if not reasons:
                            summary.rejected_without_reason += 1
                        # A row counts once per check, however many reasons that check gave.
                        summary.by_check.update({reason_check(r) for r in reasons or ()})
                    elif reasons:
                        summary.kept_with_reasons += 1
            for col in scores:
                stats = summary.scores.setdefault(
                    col, {"kept": ScoreStats(), "rejected": ScoreStats()}
                )
                stats[split].add(_finite(batch.column(col)))
    return summary


def filter_stage(manifest: dict[str, Any]) -> dict[str, Any]:
    return (manifest.get("stages") or {}).get("filter") or {}


def compare_with_manifest(counts: dict[str, Any], manifest_counts: dict[str, Any]) -> list[str]:
    """Differences between the counts read from the rows and the manifest's
    ``stages.filter.counts`` (empty when they agree)."""
    mismatches = []
    for name in ("rows", "kept", "rejected"):
        if name in manifest_counts and manifest_counts[name] != counts[name]:
            mismatches.append(f"{name}: manifest {manifest_counts[name]}, rows {counts[name]}")
    by_check = manifest_counts.get("rejected_by_check")
    if isinstance(by_check, dict):
        ours = counts["rejected_by_check"]
        for check in sorted(set(by_check) | set(ours)):
            theirs, mine = by_check.get(check, 0) or 0, ours.get(check, 0)
            if theirs != mine:
                mismatches.append(f"rejected_by_check.{check}: manifest {theirs}, rows {mine}")
    return mismatches


def thresholds_for(config: dict[str, Any], column: str) -> list[tuple[str, float]]:
    """``[(label, value), ...]`` thresholds of a score column from the filter config's
    optional ``thresholds`` mapping. Accepted spellings, for check ``x``: ``x``, ``score_x``,
    ``min_x``, ``max_x``, ``x_min``, ``x_max``; a value is a number or ``{"min": a, "max": b}``."""
    thresholds = config.get("thresholds")
    if not isinstance(thresholds, dict):
        return []
    check = column.removeprefix("score_")
    found: list[tuple[str, float]] = []

    def add(label: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float) and math.isfinite(value):
            found.append((label, float(value)))
        elif isinstance(value, dict):
            for k, v in value.items():
                if k in ("min", "max", "lo", "hi") or k.startswith(("min", "max")):
                    add(k, v)

    add("threshold", thresholds.get(check, thresholds.get(column)))
    for prefix in ("min", "max"):
        add(prefix, thresholds.get(f"{prefix}_{check}"))
        add(prefix, thresholds.get(f"{check}_{prefix}"))
    return found


def _fmt_threshold(thresholds: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{label} {fmt_number(v)}" for label, v in thresholds)


def hist_edges(stats: Iterable[ScoreStats], extra: Iterable[float] = (), bins: int = HIST_BINS):
    """Bin edges covering every value of ``stats`` (and the ``extra`` points, e.g.
    thresholds): whole-number bins for small integer ranges, ``bins`` equal bins otherwise."""
    stats = [s for s in stats if s.n]
    points = [s.lo for s in stats] + [s.hi for s in stats] + list(extra)
    lo, hi = min(points), max(points)
    if all(s.integral for s in stats) and hi - lo <= 60 and float(lo).is_integer():
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.5)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def histograms(
    run: RunDir, columns: dict[str, list[str]], edges: dict[str, np.ndarray], batch_size: int = 4096
) -> dict[str, dict[str, np.ndarray]]:
    """Counts per bin of every column in ``edges``, per split, streaming the score columns."""
    out = {
        col: {s: np.zeros(len(e) - 1, dtype=np.int64) for s in SPLITS} for col, e in edges.items()
    }
    for split, subdir in SPLITS.items():
        cols = [c for c in edges if c in columns[subdir]]
        if not cols:
            continue
        for batch in run.iter_batches(subdir, columns=cols, batch_size=batch_size):
            for col in cols:
                values = _finite(batch.column(col))
                if values.size:
                    out[col][split] += np.histogram(values, bins=edges[col])[0]
    return out


def sample_rows(
    run: RunDir, subdir: str, n_rows: int, k: int, seed: int, batch_size: int = 64
) -> list[dict[str, Any]]:
    """A uniform sample of at most ``k`` of the ``n_rows`` rows of ``subdir``, the same for
    the same ``seed``, in run order. Shards holding no chosen row are skipped (only their
    footer is read), and only the chosen rows are converted to Python objects."""
    if k <= 0 or n_rows <= 0:
        return []
    rng = random.Random(f"rationale-forge-report:{seed}:{subdir}")
    chosen = sorted(rng.sample(range(n_rows), min(k, n_rows)))
    rows: list[dict[str, Any]] = []
    offset = 0
    for shard in run.shards(subdir):
        if len(rows) == len(chosen):
            break
        with run.fs.open(shard, "rb") as f:
            pf = pq.ParquetFile(f)
            end = offset + pf.metadata.num_rows
            if bisect.bisect_left(chosen, offset) == bisect.bisect_left(chosen, end):
                offset = end
                continue
            for batch in pf.iter_batches(batch_size=batch_size):
                start = bisect.bisect_left(chosen, offset)
                stop = bisect.bisect_left(chosen, offset + batch.num_rows)
                if stop > start:
                    local = pa.array([i - offset for i in chosen[start:stop]], pa.int64())
                    rows.extend(batch.take(local).to_pylist())
                offset += batch.num_rows
                if offset >= end or stop == len(chosen):
                    break
            offset = end
    return rows


# --------------------------------------------------------------------------------------
# Reusable HTML and figure pieces
# --------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape any value (None -> empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_jpeg(image_bytes: bytes | None, max_side: int = THUMB_SIDE) -> bytes | None:
    """A JPEG thumbnail (no side above ``max_side``) of any image the pipeline can read;
    None when the bytes are missing or unreadable."""
    if not image_bytes:
        return None
    try:
        img = open_rgb(image_bytes, max_side=max_side)
    except ImageError:
        return None
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82, optimize=True)
    return buf.getvalue()


def histogram_png(
    title: str,
    edges: Sequence[float],
    series: dict[str, tuple[Sequence[int], str]],
    lines: Sequence[tuple[str, float]] = (),
    xlabel: str = "score",
    size: tuple[float, float] = (5.2, 3.0),
) -> bytes:
    """A PNG of overlaid histograms: ``series`` maps a label to (counts per bin, colour);
    ``lines`` are vertical markers (e.g. thresholds). Uses the Agg canvas directly, so
    nothing global (pyplot state, the default backend) is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    edges = np.asarray(edges, dtype=np.float64)
    for label, (counts, colour) in series.items():
        counts = np.asarray(counts)
        n = int(counts.sum())
        if not n:
            continue
        ax.stairs(counts, edges, fill=True, alpha=0.35, color=colour)
        ax.stairs(counts, edges, color=colour, linewidth=1.4, label=f"{label} (n={n:,})")
    for _label, value in lines:  # the labels are in the title; text here hits the legend
        ax.axvline(value, color="#1f1f1f", linestyle="--", linewidth=1.2)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("rows", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    # Fixed margins: tight_layout would draw every figure twice to measure it.
    fig.subplots_adjust(left=0.11, right=0.98, top=0.88, bottom=0.16)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


PAGE_CSS = """
:root {
  --bg: #f6f7f9; --panel: #ffffff; --ink: #1d2430; --muted: #5d6776; --line: #e2e6ec;
  --accent: #2454a6; --kept: #2e7d32; --kept-bg: #e8f5e9; --bad: #c62828; --bad-bg: #fdecea;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", "DejaVu Sans", sans-serif;
}
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 {
  font-size: 19px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line);
}
h3 { font-size: 15px; margin: 0 0 8px; }
code, .mono {
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 0.88em;
}
.subtitle { color: var(--muted); margin: 0 0 8px; word-break: break-all; }
.panel {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
}
.tiles {
  display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin: 16px 0;
}
.tile {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px;
}
.tile .label {
  color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em;
}
.tile .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile.kept .value { color: var(--kept); } .tile.rejected .value { color: var(--bad); }
table.data { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.data th, table.data td {
  padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle;
}
table.data th {
  font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
  font-weight: 600;
}
table.data td.num, table.data th.num { text-align: right; }
.bar { height: 10px; border-radius: 5px; background: var(--bad); opacity: .75; min-width: 2px; }
.note { margin: 10px 0 0; padding: 8px 12px; border-radius: 8px; font-size: 14px; }
.note.ok { background: var(--kept-bg); color: #1b5e20; }
.note.warn { background: #fff4e5; color: #8a4b00; }
.note ul { margin: 4px 0 0 18px; padding: 0; }
.hists { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
.hists figure {
  margin: 0; background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 8px;
}
.hists img { width: 100%; height: auto; display: block; }
.hists figcaption { font-size: 12px; color: var(--muted); padding: 2px 6px 0; }
.empty { color: var(--muted); font-style: italic; }
.tabs { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0 16px; }
.tabs input[type=radio] { position: absolute; opacity: 0; pointer-events: none; }
.tabs label {
  padding: 7px 16px; border: 1px solid var(--line); border-radius: 999px; background: var(--panel);
  cursor: pointer; font-weight: 600;
}
#tab-kept:checked + label { background: var(--kept); border-color: var(--kept); color: #fff; }
#tab-rejected:checked + label { background: var(--bad); border-color: var(--bad); color: #fff; }
.tabs .search {
  margin-left: auto; padding: 7px 12px; min-width: 280px; border: 1px solid var(--line);
  border-radius: 8px; font: inherit; background: var(--panel);
}
.panel-tab { display: none; }
body:has(#tab-kept:checked) #panel-kept, body:has(#tab-rejected:checked) #panel-rejected {
  display: block;
}
.shown { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.gallery {
  display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px;
  align-items: start;
}
.card {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
  display: flex; flex-direction: column;
}
.card.rejected { border-top: 4px solid var(--bad); }
.card.kept { border-top: 4px solid var(--kept); }
.card .thumb {
  background: #eceff3; display: flex; align-items: center; justify-content: center; height: 200px;
}
.card .thumb img { width: 100%; height: 100%; object-fit: contain; display: block; }
.card .thumb .noimg { color: var(--muted); font-size: 13px; }
.card .body {
  padding: 10px 14px 14px; display: flex; flex-direction: column; gap: 8px; min-width: 0;
}
.card .head { display: flex; flex-wrap: wrap; gap: 6px; align-items: baseline; }
.card .key { font-weight: 600; word-break: break-all; }
.chip {
  display: inline-block; font-size: 12px; padding: 1px 8px; border-radius: 999px;
  background: #eef1f6; color: var(--muted);
}
.reasons {
  margin: 0; padding: 8px 10px 8px 26px; background: var(--bad-bg); color: #8e1b1b;
  border-left: 3px solid var(--bad); border-radius: 6px; font-size: 13.5px; font-weight: 550;
}
.dup { font-size: 13px; color: var(--muted); }
.label-sm {
  font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
  margin-bottom: 2px;
}
ul.captions { margin: 0; padding-left: 18px; font-size: 14px; }
.rationale p { margin: 0; font-size: 14px; white-space: pre-wrap; overflow-wrap: anywhere; }
details { font-size: 14px; }
details > summary { cursor: pointer; color: var(--accent); font-size: 13px; font-weight: 600; }
details > div, details > p { margin-top: 6px; }
dl.facets { margin: 6px 0 0; }
dl.facets dt {
  font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
  margin-top: 6px;
}
dl.facets dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.facets ul { margin: 0; padding-left: 18px; }
.scores { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
.score {
  font-size: 12px; padding: 1px 7px; border-radius: 5px; background: #f0f2f5;
  font-variant-numeric: tabular-nums;
}
.score b { font-weight: 600; }
.score.failed { background: var(--bad-bg); color: #8e1b1b; outline: 1px solid #f2b8b5; }
.meta { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""

PAGE_JS = """
(function () {
  // index.html#kept or #rejected opens that tab.
  var tab = document.getElementById('tab-' + location.hash.slice(1));
  if (tab && tab.type === 'radio') tab.checked = true;
  var box = document.getElementById('q');
  if (!box) return;
  function apply() {
    var q = box.value.trim().toLowerCase();
    document.querySelectorAll('.panel-tab').forEach(function (panel) {
      var shown = 0, cards = panel.querySelectorAll('.card');
      cards.forEach(function (card) {
        var hit = !q || card.textContent.toLowerCase().indexOf(q) !== -1;
        card.style.display = hit ? '' : 'none';
        if (hit) shown++;
      });
      var out = panel.querySelector('.shown-n');
      if (out) out.textContent = shown + ' of ' + cards.length;
    });
  }
  box.addEventListener('input', apply);
  // index.html?q=text opens with the filter filled in.
  var q0 = new URLSearchParams(location.search).get('q');
  if (q0) { box.value = q0; apply(); }
})();
"""


def html_page(title: str, body: str, css: str = PAGE_CSS, script: str = "") -> str:
    """A complete, self-contained HTML document: inline CSS and JS only, no external
    resources. ``title`` is escaped here; ``body`` must already be safe HTML."""
    js = f"<script>{script}</script>" if script else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{css}</style></head>"
        f"<body><main>{body}</main>{js}</body></html>\n"
    )


def stat_tiles(items: Sequence[tuple[str, Any, str]]) -> str:
    """A row of big-number tiles: ``(label, value, css class)``."""
    tiles = "".join(
        f'<div class="tile {esc(cls)}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value if isinstance(value, str) else fmt_number(value))}'
        "</div></div>"
        for label, value, cls in items
    )
    return f'<div class="tiles">{tiles}</div>'


def table_html(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] = ()
) -> str:
    """A table; cells are escaped unless given as ``Markup``."""
    numeric = list(numeric) + [False] * (len(headers) - len(numeric))

    def cell(tag: str, value: Any, num: bool) -> str:
        cls = ' class="num"' if num else ""
        text = (
            value
            if isinstance(value, Markup)
            else esc(fmt_number(value) if isinstance(value, int | float) else value)
        )
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(headers, numeric, strict=True))
    body = "".join(
        "<tr>" + "".join(cell("td", v, n) for v, n in zip(row, numeric, strict=True)) + "</tr>"
        for row in rows
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Markup(str):
    """A string that is already safe HTML (not escaped again by :func:`table_html`)."""


def _text_list(items: Iterable[Any], cls: str = "") -> str:
    lis = "".join(f"<li>{esc(i)}</li>" for i in items if i not in (None, ""))
    attr = f' class="{cls}"' if cls else ""
    return f"<ul{attr}>{lis}</ul>" if lis else ""


def _preview(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,.;:") + "…"


def rationale_html(text: str | None, preview_chars: int = 320) -> str:
    """The rationale: shown whole when short, else a preview and a <details> with all of it."""
    if not text:
        return (
            '<div class="rationale"><div class="label-sm">Rationale</div>'
            '<p class="empty">none</p></div>'
        )
    head = (
        f'<div class="rationale"><div class="label-sm">Rationale · {len(text.split())} words</div>'
    )
    if len(text) <= preview_chars:
        return f"{head}<p>{esc(text)}</p></div>"
    return (
        f"{head}<p>{esc(_preview(text, preview_chars))}</p>"
        f"<details><summary>Full rationale</summary><p>{esc(text)}</p></details></div>"
    )


def facets_html(row: dict[str, Any]) -> str:
    """The rationale's other facets as a collapsible definition list (empty ones left out)."""
    parts = []
    for name in TEXT_FACETS:
        if row.get(name):
            parts.append(f"<dt>{esc(name.replace('_', ' '))}</dt><dd>{esc(row[name])}</dd>")
    for name in LIST_FACETS:
        items = [i for i in row.get(name) or () if i]
        if not items:
            continue
        if name == "tags":
            inner = " ".join(f'<span class="chip">{esc(t)}</span>' for t in items)
        else:
            inner = _text_list(items)
        parts.append(f"<dt>{esc(name.replace('_', ' '))}</dt><dd>{inner}</dd>")
    if not parts:
        return ""
    return (
        f"<details><summary>Facets ({len(parts)})</summary>"
        f'<dl class="facets">{"".join(parts)}</dl></details>'
    )


def scores_html(
    scores: dict[str, float | None], failed: Iterable[str] = (), open_: bool = False
) -> str:
    """Score pills (``check value``); the checks in ``failed`` are highlighted."""
    failed = set(failed)
    pills = "".join(
        f'<span class="score{" failed" if name in failed else ""}">'
        f"{esc(name)} <b>{esc(fmt_number(v))}</b></span>"
        for name, v in scores.items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    )
    if not pills:
        return ""
    attr = " open" if open_ else ""
    n = pills.count('class="score')
    return (
        f'<details{attr}><summary>Scores ({n})</summary><div class="scores">{pills}</div></details>'
    )


def image_card(
    key: str,
    image_bytes: bytes | None = None,
    *,
    status: str = "",
    badges: Sequence[str] = (),
    captions: Sequence[str] = (),
    reasons: Sequence[str] = (),
    body_html: str = "",
    meta: str = "",
    max_side: int = THUMB_SIDE,
) -> str:
    """One gallery card: thumbnail (embedded JPEG), key and badges, highlighted reasons,
    captions, then ``body_html`` (already-safe HTML, e.g. :func:`rationale_html`)."""
    thumb = thumbnail_jpeg(image_bytes, max_side)
    img = (
        f'<img src="{data_uri(thumb, "image/jpeg")}" alt="{esc(key)}">'
        if thumb
        else '<span class="noimg">no image</span>'
    )
    chips = "".join(f'<span class="chip">{esc(b)}</span>' for b in badges if b)
    reasons_html = _text_list(reasons, "reasons")
    caps = _text_list(captions, "captions")
    caps_html = f'<div><div class="label-sm">Captions</div>{caps}</div>' if caps else ""
    meta_html = f'<div class="meta">{esc(meta)}</div>' if meta else ""
    return (
        f'<article class="card {esc(status)}" data-key="{esc(key)}">'
        f'<div class="thumb">{img}</div><div class="body">'
        f'<div class="head"><code class="key">{esc(key)}</code>{chips}</div>'
        f"{reasons_html}{caps_html}{body_html}{meta_html}</div></article>"
    )


def filtered_row_card(row: dict[str, Any], status: str) -> str:
    """The card of one filtered row (kept or rejected)."""
    image = row.get("image") or {}
    reasons = list(row.get("reject_reasons") or ())
    failed = {reason_check(r) for r in reasons}
    scores = {
        col.removeprefix("score_"): row[col] for col in score_columns(row) if row[col] is not None
    }
    size = f"{row['width']}×{row['height']}" if row.get("width") and row.get("height") else ""
    body = rationale_html(row.get("rationale")) + facets_html(row)
    body += scores_html(scores, failed, open_=bool(reasons))
    if row.get("duplicate_of"):
        body += f'<div class="dup">duplicate of <code>{esc(row["duplicate_of"])}</code></div>'
    meta = " · ".join(str(x) for x in (row.get("backend"), row.get("model"), row.get("url")) if x)
    return image_card(
        str(row.get("key")),
        image.get("bytes") if isinstance(image, dict) else None,
        status=status,
        badges=(row.get("source") or "", size),
        captions=row.get("captions") or (),
        reasons=reasons,
        body_html=body,
        meta=meta,
    )


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


def _counts_markdown(counts: dict[str, Any]) -> str:
    lines = [
        "| metric | value |",
        "|---|---:|",
        f"| rows | {counts['rows']:,} |",
        f"| kept | {counts['kept']:,} |",
        f"| rejected | {counts['rejected']:,} |",
        f"| kept ratio | {counts['kept_ratio']:.2%} |",
        "",
        "| check | rejected rows | % of rows |",
        "|---|---:|---:|",
    ]
    for check, n in counts["rejected_by_check"].items():
        share = n / counts["rows"] if counts["rows"] else 0.0
        lines.append(f"| {check} | {n:,} | {share:.1%} |")
    manifest = counts["manifest"]
    if manifest["present"]:
        lines.append("")
        if manifest["agrees"]:
            lines.append("Counts agree with manifest.json.")
        else:
            lines.append("Counts DISAGREE with manifest.json:")
            lines.extend(f"- {m}" for m in manifest["mismatches"])
    return "\n".join(lines) + "\n"


def _counts_section(counts: dict[str, Any]) -> str:
    rows = counts["rows"]
    tiles = stat_tiles(
        [
            ("rows", rows, ""),
            ("kept", counts["kept"], "kept"),
            ("rejected", counts["rejected"], "rejected"),
            ("kept ratio", f"{counts['kept_ratio']:.1%}", ""),
        ]
    )
    by_check = counts["rejected_by_check"]
    if by_check:
        top = max(by_check.values())
        table = table_html(
            ["check", "rejected rows", "% of rows", "% of rejected", ""],
            [
                (
                    check,
                    n,
                    f"{n / rows:.1%}" if rows else "–",
                    f"{n / counts['rejected']:.1%}" if counts["rejected"] else "–",
                    Markup(f'<div class="bar" style="width:{100 * n / top:.1f}%"></div>'),
                )
                for check, n in by_check.items()
            ],
            numeric=[False, True, True, True, False],
        )
        table = table.replace("<th></th>", '<th style="width:35%"></th>')
    else:
        table = '<p class="empty">No rejections.</p>'
    notes = []
    manifest = counts["manifest"]
    if manifest["present"] and manifest["agrees"]:
        notes.append('<p class="note ok">Counts agree with <code>manifest.json</code>.</p>')
    elif manifest["present"]:
        items = "".join(f"<li>{esc(m)}</li>" for m in manifest["mismatches"])
        notes.append(
            '<div class="note warn">Counts disagree with <code>manifest.json</code>:'
            f"<ul>{items}</ul></div>"
        )
    anomalies = []
    if counts["rejected_without_reason"]:
        anomalies.append(f"{counts['rejected_without_reason']:,} rejected rows have no reason")
    if counts["kept_with_reasons"]:
        anomalies.append(f"{counts['kept_with_reasons']:,} kept rows have reject reasons")
    if anomalies:
        items = "".join(f"<li>{esc(a)}</li>" for a in anomalies)
        notes.append(f'<div class="note warn">Unexpected rows:<ul>{items}</ul></div>')
    return (
        f'<h2 id="counts">Counts</h2>{tiles}'
        f'<div class="panel"><h3>Rejections per check</h3>{table}{"".join(notes)}</div>'
    )


def write_report(
    filtered_dir: str, out_dir: str | None = None, max_examples: int = 48, seed: int = 0
) -> Path:
    """Write the report of the filtered run at ``filtered_dir`` (a path or fsspec URL) into
    ``out_dir`` (default ``FILTERED_DIR/report``); returns the path of ``index.html``."""
    run = RunDir(filtered_dir)
    if not run.exists():
        raise FileNotFoundError(f"no filtered run at {filtered_dir}")
    if not run.shards("rejected") and "reject_reasons" not in run.schema().names:
        raise ValueError(
            f"{filtered_dir} is not a filtered run (no reject_reasons): "
            f"run `forge filter` on a generated run first"
        )
    if out_dir is None:
        if "file" not in run.fs.protocol:
            raise ValueError(f"{filtered_dir} is not local: pass out_dir for the report")
        out_dir = str(Path(run.root) / "report")
    out = Path(out_dir)
    (out / "histograms").mkdir(parents=True, exist_ok=True)

    manifest = run.read_manifest()
    stage = filter_stage(manifest)
    config = stage.get("config") or {}
    columns = {subdir: _columns(run, subdir) for subdir in SPLITS.values()}

    # Pass 1: counts and score statistics (reject_reasons + score columns only).
    summary = summarise(run, columns)
    n_kept, n_rejected = summary.rows["kept"], summary.rows["rejected"]
    total = n_kept + n_rejected
    counts: dict[str, Any] = {
        "filtered_dir": filtered_dir,
        "preset": config.get("preset"),
        "rows": total,
        "kept": n_kept,
        "rejected": n_rejected,
        "kept_ratio": n_kept / total if total else 0.0,
        "rejected_by_check": dict(sorted(summary.by_check.items(), key=lambda kv: (-kv[1], kv[0]))),
        "rejected_without_reason": summary.rejected_without_reason,
        "kept_with_reasons": summary.kept_with_reasons,
    }
    manifest_counts = stage.get("counts")
    if isinstance(manifest_counts, dict):
        mismatches = compare_with_manifest(counts, manifest_counts)
        counts["manifest"] = {"present": True, "agrees": not mismatches, "mismatches": mismatches}
    else:
        counts["manifest"] = {"present": False, "agrees": None, "mismatches": []}
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    (out / "counts.md").write_text(_counts_markdown(counts))

    # Pass 2: histograms on edges fixed by pass 1 (score columns only).
    present = {col: s for col, s in summary.scores.items() if s["kept"].n or s["rejected"].n}
    # Thresholds: the stage's resolved ones (``stages.filter.thresholds``, e.g. the CLIP
    # minimums after ``clip_keep_top``), overridden by ``stages.filter.config.thresholds``.
    known = {
        **(stage.get("thresholds") if isinstance(stage.get("thresholds"), dict) else {}),
        **(config.get("thresholds") if isinstance(config.get("thresholds"), dict) else {}),
    }
    lines = {col: thresholds_for({"thresholds": known}, col) for col in present}
    edges = {col: hist_edges(s.values(), [v for _, v in lines[col]]) for col, s in present.items()}
    binned = histograms(run, columns, edges)
    scores_json: dict[str, Any] = {}
    figures = []
    for col, stats in present.items():
        threshold = _fmt_threshold(lines[col])
        title = col + (f"  ({threshold})" if threshold else "")
        png = histogram_png(
            title,
            edges[col],
            {
                "kept": (binned[col]["kept"], KEPT_COLOUR),
                "rejected": (binned[col]["rejected"], REJECTED_COLOUR),
            },
            lines[col],
        )
        path = out / "histograms" / f"{col}.png"
        path.write_bytes(png)
        scores_json[col] = {
            "kept": stats["kept"].as_dict(),
            "rejected": stats["rejected"].as_dict(),
            "thresholds": dict(lines[col]) or None,
        }
        caption = (
            f"kept: mean {fmt_number(stats['kept'].as_dict()['mean'])}, "
            f"rejected: mean {fmt_number(stats['rejected'].as_dict()['mean'])}"
        )
        figures.append(
            f'<figure><img src="{data_uri(png, "image/png")}" alt="{esc(title)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    (out / "scores.json").write_text(json.dumps(scores_json, indent=2) + "\n")

    # Pass 3: the gallery, a seeded sample of each split.
    samples = {
        split: sample_rows(run, subdir, summary.rows[split], max_examples, seed)
        for split, subdir in SPLITS.items()
    }
    (out / "samples.json").write_text(
        json.dumps({s: [r.get("key") for r in rows] for s, rows in samples.items()}, indent=2)
        + "\n"
    )

    preset = config.get("preset")
    subtitle = esc(filtered_dir) + (f" · preset <b>{esc(preset)}</b>" if preset else "")
    hist_html = (
        f'<div class="hists">{"".join(figures)}</div>'
        if figures
        else '<p class="empty">No scores recorded.</p>'
    )
    panels = []
    for split in SPLITS:
        rows = samples[split]
        n_all = summary.rows[split]
        cards = "".join(filtered_row_card(r, split) for r in rows)
        shown = (
            f'<p class="shown">Showing <span class="shown-n">{len(rows)} of {len(rows)}</span>'
            f" sampled · {n_all:,} {split} rows in the run · seed {seed}</p>"
        )
        content = (
            f'<div class="gallery">{cards}</div>'
            if rows
            else f'<p class="empty">No {split} rows.</p>'
        )
        panels.append(f'<section class="panel-tab" id="panel-{split}">{shown}{content}</section>')
    default_tab = "rejected" if n_rejected else "kept"
    tabs = "".join(
        f'<input type="radio" name="tab" id="tab-{s}"{" checked" if s == default_tab else ""}>'
        f'<label for="tab-{s}">{s.capitalize()} ({summary.rows[s]:,})</label>'
        for s in SPLITS
    )
    body = (
        f'<h1>Filter report</h1><p class="subtitle">{subtitle}</p>'
        f"{_counts_section(counts)}"
        f'<h2 id="scores">Score distributions</h2>{hist_html}'
        f'<h2 id="samples">Samples</h2>'
        f'<div class="tabs">{tabs}<input id="q" class="search" type="search" '
        f'placeholder="Filter cards by text…" aria-label="Filter cards"></div>'
        f"{''.join(panels)}"
        f"<footer>rationale-forge filter report · {total:,} rows</footer>"
    )
    index = out / "index.html"
    index.write_text(html_page(f"Filter report · {filtered_dir}", body, script=PAGE_JS))
    return index
