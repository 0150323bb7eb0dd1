"""Prompt templates (``prompts/*.j2``, rendered with Jinja2) and grounded hints from COCO
instances: object names, counts and coarse positions from the boxes."""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

DEFAULT_TEMPLATE = "rationale.j2"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str

    @property
    def hash(self) -> str:
        """Content hash recorded in every row and the manifest (16 hex digits of sha256)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @functools.cached_property
    def compiled(self) -> jinja2.Template:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        return env.from_string(self.text)

    def render(self, **values: Any) -> str:
        return self.compiled.render(**values).strip() + "\n"


def load_template(path: str | None = None, default: str = DEFAULT_TEMPLATE) -> PromptTemplate:
    """``path`` if given, else the packaged template named ``default``."""
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"prompt template {path}: no such file")
        return PromptTemplate(name=str(file), text=file.read_text(encoding="utf-8"))
    text = resources.files("rationale_forge.prompts").joinpath(default).read_text("utf-8")
    return PromptTemplate(name=default, text=text)


def coarse_position(bbox: list[float], width: int, height: int) -> str:
    """'left'/'center'/'right' and 'top'/'middle'/'bottom' of a box centre, in thirds."""
    x, y, w, h = bbox
    cx, cy = (x + w / 2) / max(width, 1), (y + h / 2) / max(height, 1)
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    vertical = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    return f"{vertical} {horizontal}" if vertical != "middle" else f"middle {horizontal}"


def grounding_hints(
    objects: list[dict[str, Any]], width: int | None, height: int | None
) -> list[str]:
    """One line per category: its count and where each instance sits, largest first."""
    if not objects or not width or not height:
        return []
    counts = Counter(o["category"] for o in objects)
    lines = []
    for category, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        boxes = sorted(
            (o for o in objects if o["category"] == category), key=lambda o: -(o.get("area") or 0)
        )
        places = ", ".join(coarse_position(o["bbox"], width, height) for o in boxes)
        lines.append(f"{category} x{n}: {places}")
    return lines


def render_row(template: PromptTemplate, row: dict[str, Any], n_variants: int = 3) -> str:
    """The prompt for one ingested row."""
    return template.render(
        captions=row.get("captions") or [],
        objects=grounding_hints(row.get("objects") or [], row.get("width"), row.get("height")),
        n_variants=n_variants,
    )
