"""Scores per category: the judge's, the official scorers' (read from their output files),
and the difference between two runs.

Every score is a fraction in [0, 1] (DPG-Bench prints percentages: 84.19 is stored as
0.8419). A score block, as in ``results.json``::

    {"overall": 0.71, "images": 0.69, "rule": "mean of categories",
     "categories": {"counting": {"score": 0.5, "n": 320, "failed": 0}, ...}}

``overall`` follows the benchmark's own rule: GenEval averages its six task scores
(``summary_scores.py``); DPG-Bench averages over prompts; T2I-CompBench reports categories
separately, and their plain mean is given as ``overall``. ``images`` is the mean over all
scored images. ``failed`` counts images the judge gave no score (left out of the means).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .benchmarks import GENEVAL_TAGS

RULE_CATEGORIES = "mean of categories"
RULE_IMAGES = "mean of images"
OVERALL_RULES = {
    "geneval": RULE_CATEGORIES,
    "dpg": RULE_IMAGES,
    "t2i-compbench": RULE_CATEGORIES,
    "prompts": RULE_CATEGORIES,
}


class ScorerOutputError(ValueError):
    """An official scorer's output file that cannot be read."""


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def category_order(bench: str, seen: Iterable[str]) -> list[str]:
    """Categories in a stable order: GenEval's tasks as its paper lists them, then the rest
    in the order they first appear."""
    seen = list(dict.fromkeys(seen))
    known = [t for t in GENEVAL_TAGS if t in seen] if bench in ("geneval", "prompts") else []
    return known + [c for c in seen if c not in known]


def score_block(
    per_category: dict[str, list[float]],
    failed: dict[str, int],
    rule: str,
    all_values: Sequence[float],
    order: Sequence[str],
) -> dict[str, Any]:
    """One score block from the values of each category."""
    categories = {
        cat: {
            "score": _mean(per_category.get(cat, [])),
            "n": len(per_category.get(cat, [])),
            "failed": failed.get(cat, 0),
        }
        for cat in order
    }
    means = [c["score"] for c in categories.values() if c["score"] is not None]
    overall = _mean(means) if rule == RULE_CATEGORIES else _mean(all_values)
    return {
        "overall": overall,
        "images": _mean(all_values),
        "rule": rule,
        "categories": categories,
    }


def aggregate_judge(bench: str, records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The judge's scores per category from the sample records (``categories`` and
    ``judge.score`` of each); None when no record was judged. A record counts towards every
    category of its prompt (a DPG-Bench prompt asks about entities, attributes, ...)."""
    per_category: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    all_values: list[float] = []
    seen: list[str] = []
    judged = False
    for rec in records:
        judge = rec.get("judge")
        seen.extend(rec["categories"])
        if judge is None:
            continue
        judged = True
        score = judge.get("score")
        ok = isinstance(score, int | float) and math.isfinite(score)
        if ok:
            all_values.append(float(score))
        for cat in rec["categories"]:
            if ok:
                per_category.setdefault(cat, []).append(float(score))
            else:
                failed[cat] = failed.get(cat, 0) + 1
    if not judged:
        return None
    order = category_order(bench, seen)
    return score_block(per_category, failed, OVERALL_RULES[bench], all_values, order)


# --------------------------------------------------------------------------------------
# Official scorers' outputs
# --------------------------------------------------------------------------------------


def read_geneval_results(path: str | Path) -> dict[str, Any]:
    """GenEval's ``results.jsonl`` (one line per image, ``tag`` and ``correct``) scored as
    ``summary_scores.py`` does: per task the share of correct images, overall the mean of
    the task scores. Also ``prompts``: the share of prompts with at least one correct image."""
    path = Path(path)
    per_tag: dict[str, list[float]] = {}
    by_prompt: dict[str, bool] = {}
    all_values: list[float] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ScorerOutputError(f"{path}: no such file") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tag, correct = row["tag"], row["correct"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ScorerOutputError(f"{path}:{lineno}: not a GenEval result line ({exc})") from None
        value = 1.0 if correct else 0.0
        per_tag.setdefault(tag, []).append(value)
        all_values.append(value)
        prompt_id = str(row.get("metadata", row.get("prompt")))
        by_prompt[prompt_id] = by_prompt.get(prompt_id, False) or bool(correct)
    if not all_values:
        raise ScorerOutputError(f"{path}: no results")
    block = score_block(
        per_tag, {}, RULE_CATEGORIES, all_values, category_order("geneval", per_tag)
    )
    block["prompts"] = _mean([1.0 if v else 0.0 for v in by_prompt.values()])
    return block


_DPG_SCORE = re.compile(r"DPG-Bench score:\s*([0-9.eE+-]+|nan)")
_DPG_CATEGORY = re.compile(r"^\t([^:]+):\s*([0-9.eE+-]+|nan)\s*$")


def read_dpg_results(path: str | Path) -> dict[str, Any]:
    """The summary ``compute_dpg_bench.py`` appends to its ``--res-path`` file: level-1
    category scores and the DPG-Bench score (percentages, stored here as fractions). Its
    per-image lines (``path, score..., mean``) give ``n``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScorerOutputError(f"{path}: no such file") from None
    match = _DPG_SCORE.search(text)
    if not match:
        raise ScorerOutputError(f"{path}: no 'DPG-Bench score:' line (did the scorer finish?)")
    categories: dict[str, dict[str, Any]] = {}
    section = None
    images = 0
    for line in text.splitlines():
        if line.startswith("L1 category scores"):
            section = "l1"
            continue
        if line.startswith("L2 category scores") or line.startswith("Image path:"):
            section = None
            continue
        found = _DPG_CATEGORY.match(line)
        if section == "l1" and found:
            categories[found.group(1).strip()] = {
                "score": float(found.group(2)) / 100,
                "n": None,
                "failed": 0,
            }
        elif line.count(", ") >= 2 and not line.startswith(("\t", "Model:", "Save results")):
            images += 1
    overall = float(match.group(1)) / 100
    return {
        "overall": overall,
        "images": overall,
        "rule": RULE_IMAGES,
        "categories": categories,
        "n": images,
    }


def read_t2i_vqa_result(path: str | Path) -> dict[str, Any]:
    """A T2I-CompBench ``vqa_result.json`` (``[{"question_id", "answer"}, ...]``): the mean
    answer over images, as its scripts print it."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        values = [float(r["answer"]) for r in rows]
    except FileNotFoundError:
        raise ScorerOutputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ScorerOutputError(f"{path}: not a vqa_result.json ({exc})") from None
    if not values:
        raise ScorerOutputError(f"{path}: no answers")
    return {"score": _mean(values), "n": len(values), "failed": 0}


def t2i_block(per_category: dict[str, dict[str, Any]], order: Sequence[str]) -> dict[str, Any]:
    """A score block from T2I-CompBench categories scored one by one."""
    cats = {c: per_category[c] for c in order if c in per_category}
    means = [c["score"] for c in cats.values()]
    return {
        "overall": _mean(means),
        "images": None,
        "rule": RULE_CATEGORIES,
        "categories": cats,
    }


# --------------------------------------------------------------------------------------
# Comparing runs
# --------------------------------------------------------------------------------------


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{source, category, a, b, diff}`` (diff = b - a; None where either side has
    no number) for every score source (judge, official) and category of either run,
    ``overall`` first."""
    rows = []
    scores_a, scores_b = a.get("scores", {}), b.get("scores", {})
    for source in [s for s in ("judge", "official") if s in scores_a or s in scores_b]:
        block_a, block_b = scores_a.get(source) or {}, scores_b.get(source) or {}
        cats_a, cats_b = block_a.get("categories", {}), block_b.get("categories", {})
        names = list(dict.fromkeys([*cats_a, *cats_b]))
        entries = [("overall", block_a.get("overall"), block_b.get("overall"))]
        entries += [
            (c, (cats_a.get(c) or {}).get("score"), (cats_b.get(c) or {}).get("score"))
            for c in names
        ]
        for name, va, vb in entries:
            diff = vb - va if va is not None and vb is not None else None
            rows.append({"source": source, "category": name, "a": va, "b": vb, "diff": diff})
    return rows
