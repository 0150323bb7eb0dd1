"""What an evaluation shows: a table per category on the console and ``report.html`` (each
prompt's image grid beside its rationales), built from the report helpers of
:mod:`rationale_forge.report`."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from rich.table import Table

from ..report import (
    PAGE_CSS,
    Markup,
    esc,
    html_page,
    image_card,
    rationale_html,
    stat_tiles,
    table_html,
)
from ..ui import console
from .layouts import grid_image

REPORT_FILE = "report.html"
CELL_SIDE = 256  # pixels per sample in the report's grids

EVAL_CSS = """
.card.eval { flex-direction: row; align-items: stretch; }
.card.eval .thumb { flex: 0 0 48%; height: auto; min-height: 200px; align-items: flex-start; }
.card.eval .thumb img { height: auto; }
.card.eval .body { flex: 1 1 52%; }
.prompt { margin: 0; font-size: 15px; font-weight: 550; overflow-wrap: anywhere; }
.gallery.eval { grid-template-columns: 1fr; }
.sample { border-top: 1px solid var(--line); padding-top: 6px; }
.judge-reason { font-size: 13px; color: var(--muted); white-space: pre-wrap; }
@media (max-width: 820px) { .card.eval { flex-direction: column; } }
"""


def fmt_score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def fmt_diff(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def category_rows(results: dict[str, Any]) -> list[tuple[str, Any, str, Any, str]]:
    """(category, images, judge score, images the judge gave no score, official score)
    rows, ``overall`` first."""
    judge = results["scores"].get("judge") or {}
    official = results["scores"].get("official") or {}
    jc, oc = judge.get("categories", {}), official.get("categories", {})
    counts = results["counts"].get("categories") or {}
    rows = [
        (
            "overall",
            results["counts"]["images"],
            fmt_score(judge.get("overall")),
            sum(c.get("failed") or 0 for c in jc.values()) if jc else None,
            fmt_score(official.get("overall")),
        )
    ]
    for cat in dict.fromkeys([*counts, *jc, *oc]):
        j, o = jc.get(cat) or {}, oc.get(cat) or {}
        rows.append(
            (
                cat,
                counts.get(cat),
                fmt_score(j.get("score")),
                j.get("failed"),
                fmt_score(o.get("score")),
            )
        )
    return rows


def print_results(results: dict[str, Any]) -> None:
    """The per-category table on the console."""
    table = Table(
        title=f"{results['bench']} · {results.get('model') or 'model'} · "
        f"{results['counts']['prompts']} prompts x {results['n_per_prompt']}",
        header_style="bold",
    )
    for name, justify in (
        ("category", "left"),
        ("images", "right"),
        ("judge", "right"),
        ("no score", "right"),
        ("official", "right"),
    ):
        table.add_column(name, justify=justify)
    for cat, n, judge, failed, off in category_rows(results):
        table.add_row(
            cat, "–" if n is None else f"{n:,}", judge, "–" if failed is None else str(failed), off
        )
    console.print(table)
    scorer = results.get("official_scorer") or {}
    if scorer.get("error"):
        console.print(f"[red]official scorer failed:[/red] {scorer['error']}")
    elif results["scores"].get("official") is None and scorer.get("commands"):
        console.print("official scores: run the commands in official/commands.sh, then rerun")


def print_comparison(rows: Sequence[dict[str, Any]], name_a: str, name_b: str) -> None:
    table = Table(title=f"{name_b} minus {name_a}", header_style="bold")
    for name, justify in (
        ("score", "left"),
        ("category", "left"),
        (name_a, "right"),
        (name_b, "right"),
        ("diff", "right"),
    ):
        table.add_column(name, justify=justify)
    for r in rows:
        diff = fmt_diff(r["diff"])
        if r["diff"] is not None and r["diff"] != 0:
            diff = f"[{'green' if r['diff'] > 0 else 'red'}]{diff}[/]"
        table.add_row(r["source"], r["category"], fmt_score(r["a"]), fmt_score(r["b"]), diff)
    console.print(table)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _pick(records_by_key: dict[str, list[dict]], limit: int) -> list[str]:
    """Up to ``limit`` prompt keys, taken in turn from each category so every category
    shows up, in prompt order within a category."""
    by_cat: dict[str, list[str]] = {}
    for key, recs in records_by_key.items():
        by_cat.setdefault(recs[0]["categories"][0], []).append(key)
    picked: list[str] = []
    queues = list(by_cat.values())
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    order = {k: i for i, k in enumerate(records_by_key)}
    return sorted(picked, key=order.__getitem__)


def prompt_card(out: Path, recs: Sequence[dict[str, Any]]) -> str:
    """One prompt: its samples' grid beside each sample's judge score and rationale."""
    first = recs[0]
    images = []
    for r in recs:
        try:
            with Image.open(out / r["image"]) as img:
                images.append(img.convert("RGB"))
        except OSError:
            images.append(Image.new("RGB", (CELL_SIDE, CELL_SIDE), "#ddd"))
    grid = grid_image(images, cols=min(len(images), 2), side=CELL_SIDE)
    scored = [
        r["judge"]["score"] for r in recs if r.get("judge") and r["judge"]["score"] is not None
    ]
    badges = [*first["categories"]]
    if scored:
        badges.append(f"judge {sum(scored) / len(scored):.2f}")
    parts = [
        f'<div><div class="label-sm">Prompt</div><p class="prompt">{esc(first["prompt"])}</p></div>'
    ]
    for r in recs:
        judge = r.get("judge")
        head = f"sample {r['k']}"
        if judge is not None:
            head += f" · judge {fmt_score(judge.get('score'))}"
        reason = ""
        if judge and judge.get("reason"):
            reason = (
                f"<details><summary>Judge's reason</summary>"
                f'<p class="judge-reason">{esc(judge["reason"])}</p></details>'
            )
        rationale = (
            rationale_html(r["rationale"])
            if r["rationale"] is not None
            else '<p class="empty">no rationale (--no-think)</p>'
        )
        parts.append(
            f'<div class="sample"><div class="label-sm">{esc(head)}</div>{rationale}{reason}</div>'
        )
    return image_card(
        first["key"],
        _png(grid),
        status="eval",
        badges=badges,
        body_html="".join(parts),
        max_side=2 * CELL_SIDE,
    )


def write_html_report(
    out: Path, results: dict[str, Any], records: Sequence[dict[str, Any]], limit: int = 200
) -> Path:
    """``OUT/report.html``: numbers per category, then prompts with grids and rationales."""
    by_key: dict[str, list[dict]] = {}
    for r in records:
        by_key.setdefault(r["key"], []).append(r)
    keys = _pick(by_key, limit)
    judge = results["scores"].get("judge") or {}
    official = results["scores"].get("official") or {}
    tiles = stat_tiles(
        [
            ("prompts", results["counts"]["prompts"], ""),
            ("images", results["counts"]["images"], ""),
            ("judge overall", fmt_score(judge.get("overall")), ""),
            ("official overall", fmt_score(official.get("overall")), ""),
        ]
    )
    table = table_html(
        ["category", "images", "judge", "no score", "official"],
        category_rows(results),
        numeric=[False, True, True, True, True],
    )
    scorer = results.get("official_scorer") or {}
    commands = "".join(f"<li><code>{esc(c)}</code></li>" for c in scorer.get("commands", []))
    note = ""
    if scorer.get("error"):
        note = f'<div class="note warn">Official scorer failed: {esc(scorer["error"])}</div>'
    elif not official:
        note = '<div class="note warn">No official score yet: run the commands below.</div>'
    cards = "".join(prompt_card(out, by_key[k]) for k in keys)
    sampling = results.get("sampling") or {}
    subtitle = " · ".join(
        str(x)
        for x in (
            results.get("model"),
            f"think={sampling.get('think')}",
            f"cfg={sampling.get('cfg_weight', '?')}",
            f"seed={sampling.get('seed')}",
        )
        if x
    )
    body = (
        f"<h1>{esc(results['bench'])} evaluation</h1>"
        f'<p class="subtitle">{esc(subtitle)}</p>{tiles}'
        f'<h2>Scores per category</h2><div class="panel">{table}{note}'
        f"<details><summary>Official scorer commands</summary><ul>{commands}</ul></details>"
        "</div>"
        f"<h2>Samples</h2>"
        f'<p class="shown">{len(keys)} of {len(by_key)} prompts</p>'
        f'<div class="gallery eval">{Markup(cards)}</div>'
        f"<footer>{esc(results.get('created', ''))}</footer>"
    )
    path = out / REPORT_FILE
    path.write_text(
        html_page(f"{results['bench']} evaluation", body, PAGE_CSS + EVAL_CSS), encoding="utf-8"
    )
    return path
