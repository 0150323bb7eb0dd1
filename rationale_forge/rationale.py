"""The object a VLM writes for each image, its JSON Schema, and parsing with repair.

Field names mirror the public ReasonGen-R1 SFT set (``detailed_caption`` is our
``rationale``; ``augmented_prompts`` and ``augmented_cots`` are flattened), so its users can
switch.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Fields that hold one string, in the order a model is asked to write them.
TEXT_FIELDS = ("rationale", "layout", "style", "composition", "short_caption", "step_by_step")
#: Fields that hold a list of strings.
LIST_FIELDS = (
    "paraphrases",
    "tags",
    "object_prompts",
    "varied_captions",
    "object_centric",
    "region_descriptions",
)
FIELDS = TEXT_FIELDS + LIST_FIELDS


class Rationale(BaseModel):
    """What an image generator should think through before drawing this image."""

    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(
        description="the plan, written as the generator should think it "
        "before drawing: subject, layout, style, composition, key details "
        "(about 80-250 words)"
    )
    layout: str = Field(description="where each element sits: positions, sizes, depth")
    style: str = Field(description="medium, palette, lighting, mood")
    composition: str = Field(description="framing, viewpoint, focal point, balance")
    short_caption: str = Field(description="one short caption of the image")
    paraphrases: list[str] = Field(description="paraphrases of the caption")
    tags: list[str] = Field(description="short tags: objects, attributes, style words")
    object_prompts: list[str] = Field(description="a prompt per main object")
    varied_captions: list[str] = Field(description="captions of varied length and focus")
    step_by_step: str = Field(description="the plan as numbered drawing steps")
    object_centric: list[str] = Field(description="one description per object: look, place")
    region_descriptions: list[str] = Field(description="what each region of the image holds")

    @field_validator(*TEXT_FIELDS, mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, list):  # a model that answered a list where a string belongs
            return "\n".join(str(v) for v in value)
        return value.strip() if isinstance(value, str) else value

    @field_validator(*LIST_FIELDS, mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        if isinstance(value, str):  # one item per line
            value = value.splitlines()
        if isinstance(value, list):
            out = []
            for v in value:
                if isinstance(v, dict):  # {"object": ..., "description": ...}
                    v = ": ".join(str(x) for x in v.values())
                if v is not None and str(v).strip():
                    out.append(str(v).strip())
            return out
        return value

    @field_validator("tags", mode="after")
    @classmethod
    def _split_tags(cls, value: list[str]) -> list[str]:
        return [t.strip() for tag in value for t in tag.split(",") if t.strip()]


#: Token budget of each string at max_tokens=1500, scaled with max_tokens: the slot budgets
#: of local constrained decoding, and the length bounds sent to self-hosted servers.
SLOT_BUDGETS = {
    "rationale": 320,
    "layout": 80,
    "style": 60,
    "composition": 60,
    "short_caption": 40,
    "step_by_step": 160,
    "paraphrases": 40,
    "tags": 8,
    "object_prompts": 40,
    "varied_captions": 40,
    "object_centric": 50,
    "region_descriptions": 40,
}
LIST_ITEMS = {
    "paraphrases": 3,
    "tags": 6,
    "object_prompts": 2,
    "varied_captions": 3,
    "object_centric": 2,
    "region_descriptions": 3,
}
REFERENCE_MAX_TOKENS = 1500
#: Characters per token when a token budget becomes a maxLength (typical English text).
CHARS_PER_TOKEN = 4


def budget_scale(max_tokens: int) -> float:
    return max(max_tokens, 100) / REFERENCE_MAX_TOKENS


def json_schema(bounded: bool = False, n_variants: int | None = None) -> dict[str, Any]:
    """The JSON Schema sent as ``response_format``. ``bounded`` adds maxLength/maxItems
    from the token budgets (the longest valid answer is about 1,300 tokens of English):
    OpenAI's strict mode rejects those keywords, but the grammar engines of self-hosted
    servers honour them, so a weak model can never ramble a string until it is cut off."""
    schema = Rationale.model_json_schema()
    schema["additionalProperties"] = False
    if bounded:
        for name, prop in schema["properties"].items():
            bounds = {"maxLength": SLOT_BUDGETS[name] * CHARS_PER_TOKEN}
            if name in LIST_FIELDS:
                items = LIST_ITEMS[name]
                if n_variants and name in ("paraphrases", "varied_captions"):
                    items = n_variants
                prop["maxItems"] = items
                prop["items"] = {**prop.get("items", {}), **bounds}
            else:
                prop.update(bounds)
    return schema


class ParseError(ValueError):
    """An answer that is not a usable rationale object even after repair."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse(text: str) -> tuple[Rationale, bool]:
    """Parse a model's answer; returns the object and whether it needed repair.

    Accepts plain JSON, JSON inside a Markdown fence or surrounded by prose, and broken JSON
    (trailing commas, missing quotes or brackets, cut-off strings) through ``json_repair``.
    """
    if not text or not text.strip():
        raise ParseError("empty answer")
    candidate = text.strip()
    fenced = _FENCE.search(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    repaired = False
    try:
        obj = json.loads(candidate)
    except json.JSONDecodeError:
        start = candidate.find("{")
        obj = json_repair.loads(candidate[start:] if start >= 0 else candidate)
        repaired = True
    if not isinstance(obj, dict) or not obj:
        raise ParseError("the answer holds no JSON object")
    try:
        return Rationale.model_validate(obj), repaired
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ParseError(f"the JSON object does not match the schema ({problems})") from exc
