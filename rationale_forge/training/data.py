"""SFT data: our exported datasets and the public ReasonGen-R1 SFT set, mapped to one shape.

Every row becomes an *example*: an image key (the image's sha256), the rationale, and the
prompt variants by style. Training samples one style per example (weights configurable),
then one prompt of that style, so the model does not learn to expect one way of asking.

Column names (``forge export --format forge``, see the README): ``image``, ``image_id``,
``rationale``, ``caption``/``captions``, ``short_caption``, ``paraphrases``, ``tags``,
``object_prompts``, ``varied_captions``. The ReasonGen-R1 layout (``brief_caption``,
``detailed_caption``, ``augmented_prompts{...}``) is mapped at this edge.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "DEFAULT_STYLE_WEIGHTS",
    "PROMPT_STYLES",
    "DataError",
    "Example",
    "image_key",
    "load_rows",
    "pick_prompt",
    "to_example",
]

PROMPT_STYLES = ("caption", "short_caption", "paraphrases", "varied_captions", "tags", "objects")
#: How often each prompt style is drawn (styles a row lacks are skipped, the rest renormalised).
DEFAULT_STYLE_WEIGHTS = {
    "caption": 0.25,
    "short_caption": 0.15,
    "paraphrases": 0.2,
    "varied_captions": 0.2,
    "tags": 0.1,
    "objects": 0.1,
}


class DataError(ValueError):
    """A dataset or a row that training cannot use; says which and why."""


@dataclass
class Example:
    key: str
    rationale: str
    prompts: dict[str, list[str]]  # style -> candidate prompts (never empty lists)


def image_key(row: dict[str, Any]) -> str:
    """The image's identity: ``image_id`` when exported by forge, else sha256 of its bytes."""
    if row.get("image_id"):
        return str(row["image_id"])
    return hashlib.sha256(image_bytes(row["image"])).hexdigest()


def image_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        return Path(value["path"]).read_bytes()
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(value, bytes):
        return value
    raise DataError(f"unsupported image value of type {type(value).__name__}")


def open_image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    return Image.open(io.BytesIO(image_bytes(value)))


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def to_example(row: dict[str, Any], where: str = "row") -> Example:
    """Map one row (forge or ReasonGen-R1 layout) to an :class:`Example`.

    Raises :class:`DataError` naming ``where`` when the row has no rationale or no prompt.
    """
    if "detailed_caption" in row:  # ReasonGen-R1 SFT layout
        aug = row.get("augmented_prompts") or {}
        rationale = row.get("detailed_caption")
        caption = _texts(row.get("brief_caption"))
        source = {
            "short_caption": aug.get("short_caption"),
            "paraphrases": aug.get("paraphrases"),
            "varied_captions": aug.get("varied_captions"),
            "tags": aug.get("tags"),
            "objects": aug.get("object_prompts"),
        }
    else:
        rationale = row.get("rationale")
        caption = _texts(row.get("caption")) or _texts(row.get("captions"))
        source = {
            "short_caption": row.get("short_caption"),
            "paraphrases": row.get("paraphrases"),
            "varied_captions": row.get("varied_captions"),
            "tags": row.get("tags"),
            "objects": row.get("object_prompts"),
        }
    if not rationale or not str(rationale).strip():
        raise DataError(f"{where}: no rationale")
    prompts = {"caption": caption}
    for style, value in source.items():
        texts = _texts(value)
        if style == "tags" and texts:
            texts = [", ".join(texts)]  # one prompt made of the tag list
        prompts[style] = texts
    prompts = {k: v for k, v in prompts.items() if v}
    if not prompts:
        raise DataError(f"{where}: no prompt (caption, short caption, paraphrases ... all empty)")
    return Example(key=image_key(row), rationale=str(rationale).strip(), prompts=prompts)


def pick_prompt(example: Example, weights: dict[str, float], rng: random.Random) -> str:
    """Draw a style by weight among those the example has, then one prompt of it."""
    styles = [s for s in example.prompts if weights.get(s, 0) > 0]
    if not styles:
        styles = list(example.prompts)
        return rng.choice(example.prompts[rng.choice(styles)])
    style = rng.choices(styles, weights=[weights[s] for s in styles])[0]
    return rng.choice(example.prompts[style])


def load_rows(dataset: str, split: str = "train"):
    """A ``datasets.Dataset`` from an exported folder, a ``save_to_disk`` folder or a Hub id."""
    import datasets

    path = Path(dataset)
    if not path.exists():
        from ..vlm.local import hub_reachable

        if not hub_reachable():
            raise DataError(
                f"no dataset folder {dataset} here, and the Hugging Face Hub cannot be "
                "reached to load it as a Hub id (check the path)"
            )
    try:
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            rows = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            rows = datasets.load_dataset(str(dataset), split=split)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"cannot load split {split!r} of {dataset}: {err}") from err
    if "image" not in rows.column_names:
        raise DataError(f"{dataset}: no 'image' column (columns: {', '.join(rows.column_names)})")
    # the original bytes: hashed for the image key, decoded only when the cache needs them
    return rows.cast_column("image", datasets.Image(decode=False))


def iter_examples(rows, errors: list[str] | None = None) -> Iterator[tuple[int, Example]]:
    """(index, example) for every usable row; unusable rows are reported in ``errors``."""
    for i, row in enumerate(rows):
        try:
            yield i, to_example(row, where=f"row {i}")
        except DataError as err:
            if errors is None:
                raise
            errors.append(str(err))
