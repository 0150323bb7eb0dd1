"""Prompts for reinforcement learning: GenEval-style compositional prompts and DPG-style
dense prompts, with disjoint train/val splits and exclusion of evaluation prompts.

GenEval's six categories, from the 80 COCO classes (named as GenEval's
``object_names.txt`` names them) plus common objects outside COCO:

* ``single_object`` "a photo of a bench"; ``two_object`` "a photo of a cat and a dog";
* ``counting`` "a photo of three clocks" (``exclude``: four clocks, as GenEval);
* ``colors`` "a photo of a pink car"; ``color_attr`` "a photo of a red umbrella and a blue
  cow" (colours bound to the right object);
* ``position`` "a photo of a dog right of a teddy bear" (the dog's ``position`` is
  ``["right of", 0]``: relative to include[0], as GenEval writes it).

``dense`` prompts (DPG-Bench style) describe several objects with counts, colours and
other attributes, relations between them, a setting, a style and the lighting.

Every row mirrors GenEval's ``evaluation_metadata.jsonl`` (``prompt``, ``tag``,
``include`` of ``{"class", "count", "color"?, "position"?}``, ``exclude`` for counting)
plus ``split``, so an evaluator can score the rows by category. Generation is
deterministic for a seed; prompts are unique after normalisation (case, whitespace, a
trailing period), so no prompt is in both splits; prompts equal to an evaluation prompt
(``exclude``) are refused and drawn again.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("geneval", "dense", "mixed")
GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
TAGS = (*GENEVAL_TAGS, "dense")

#: Share of each tag per kind. Mixed: half GenEval-style (equal categories), half dense.
KIND_WEIGHTS: dict[str, dict[str, float]] = {
    "geneval": {t: 1 / 6 for t in GENEVAL_TAGS},
    "dense": {"dense": 1.0},
    "mixed": {**{t: 1 / 12 for t in GENEVAL_TAGS}, "dense": 0.5},
}

#: The 80 COCO classes as GenEval's object_names.txt names them.
COCO_OBJECTS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop",
    "computer mouse", "tv remote", "computer keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

#: Common, drawable objects outside COCO.
EXTRA_OBJECTS = (
    "guitar", "violin", "piano", "drum", "trumpet", "lamp", "candle", "lantern", "teapot",
    "kettle", "mug", "basket", "bucket", "box", "balloon", "flag", "hat", "boot", "pillow",
    "rug", "mirror", "ladder", "globe", "camera", "telescope", "robot", "rocket", "owl",
    "fox", "rabbit", "deer", "lion", "tiger", "penguin", "dolphin", "whale", "turtle", "frog",
    "butterfly", "duck", "chicken", "pig", "goat", "squirrel", "wolf", "strawberry", "lemon",
    "pear", "watermelon", "pineapple", "cherry", "tomato", "pumpkin", "mushroom", "egg",
    "cupcake", "cookie", "croissant", "sunflower", "rose", "tulip", "cactus", "tree", "house",
    "tent", "bridge", "lighthouse", "windmill", "snowman", "sailboat",
)  # fmt: skip

#: Spellings the simple plural rules get wrong; pairs of skis/scissors read as units.
_PLURALS = {
    "person": "people",
    "sheep": "sheep",
    "deer": "deer",
    "skis": "pairs of skis",
    "scissors": "pairs of scissors",
    "knife": "knives",
    "wolf": "wolves",
    "computer mouse": "computer mice",
    "tomato": "tomatoes",
    "hair drier": "hair driers",
    "tv": "tvs",
    "cactus": "cacti",
}
_SINGULAR_TEXT = {"skis": "pair of skis", "scissors": "pair of scissors"}
#: Not counted ("three broccolis" is not how people speak).
_UNCOUNTABLE = {"broccoli"}

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
POSITIONS = ("left of", "right of", "above", "below")
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}

# -- dense prompts ------------------------------------------------------------------------
STYLES = (
    "A photo of", "A watercolor painting of", "A digital illustration of",
    "An oil painting of", "A 3D render of", "A pencil sketch of", "A cinematic photograph of",
    "A children's book illustration of", "A low-poly render of", "A vintage postcard of",
    "A studio photograph of", "An anime-style drawing of", "A claymation scene of",
    "A pixel-art picture of", "A macro photograph of", "A flat vector illustration of",
)  # fmt: skip
SETTINGS = (
    "in a sunlit kitchen", "on a sandy beach at sunset", "in a misty forest",
    "on a busy city street at night", "in a cozy living room", "in a snowy park",
    "on a wooden dock by a lake", "in a futuristic laboratory", "in a flower garden",
    "on a rooftop terrace", "in a quiet library", "on a desert road", "in a rainy alley",
    "inside a greenhouse", "on a mountain meadow", "in an empty classroom",
    "on a picnic blanket in a park", "in a medieval castle hall", "on a space station",
    "at a farmers' market",
)  # fmt: skip
LIGHTING = (
    "with soft morning light", "under dramatic side lighting", "with a warm golden glow",
    "in muted pastel tones", "with vivid saturated colors", "with a shallow depth of field",
    "under cool blue moonlight", "in high contrast black shadows", "with gentle fog",
    "in bright midday sun",
)  # fmt: skip
ATTRIBUTES = (
    "small", "large", "tiny", "huge", "shiny", "old", "weathered", "glossy", "striped",
    "polka-dotted", "checkered", "sparkling", "fluffy", "wooden", "ceramic",
)  # fmt: skip
RELATIONS = (
    "next to", "behind", "in front of", "on top of", "beneath", "to the left of",
    "to the right of", "beside", "near",
)  # fmt: skip
#: Dense relations that are GenEval positions (the evaluator can check them).
_RELATION_POSITION = {"to the left of": "left of", "to the right of": "right of"}


class PromptSpaceError(ValueError):
    """The asked number of distinct prompts cannot be made."""


class ExcludeFileError(ValueError):
    """An exclusion file that cannot be read (names the file and line)."""


@dataclass(frozen=True)
class Obj:
    cls: str  # the class an evaluator checks (GenEval's name for COCO classes)
    coco: bool

    @property
    def text(self) -> str:
        return _SINGULAR_TEXT.get(self.cls, self.cls)

    @property
    def plural(self) -> str:
        return plural(self.cls)

    @property
    def countable(self) -> bool:
        return self.cls not in _UNCOUNTABLE


def plural(noun: str) -> str:
    """English plural of an object name (the last word inflects)."""
    if noun in _PLURALS:
        return _PLURALS[noun]
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    first = phrase.split()[0].lower()
    vowel = first[0] in "aeiou" and not first.startswith(("uni", "use", "one", "eu"))
    return f"{'an' if vowel else 'a'} {phrase}"


def objects(which: str = "extended") -> list[Obj]:
    """The objects prompts are built from: ``coco`` (the 80 classes, which GenEval's
    detector can check) or ``extended`` (COCO plus common objects outside it)."""
    if which not in ("coco", "extended"):
        raise ValueError(f"objects {which!r}: expected 'coco' or 'extended'")
    out = [Obj(c, True) for c in COCO_OBJECTS]
    if which == "extended":
        out += [Obj(c, False) for c in EXTRA_OBJECTS]
    return out


def normalise(prompt: str) -> str:
    """The form prompts are compared in: lower case, single spaces, no trailing period."""
    return re.sub(r"\s+", " ", prompt).strip().rstrip(".").strip().lower()


# -- one prompt per tag ---------------------------------------------------------------------
Row = dict[str, Any]


def _single(rng: random.Random, objs: list[Obj]) -> Row:
    o = rng.choice(objs)
    return {"prompt": f"a photo of {article(o.text)}", "include": [{"class": o.cls, "count": 1}]}


def _two(rng: random.Random, objs: list[Obj]) -> Row:
    a, b = rng.sample(objs, 2)
    return {
        "prompt": f"a photo of {article(a.text)} and {article(b.text)}",
        "include": [{"class": a.cls, "count": 1}, {"class": b.cls, "count": 1}],
    }


def _counting(rng: random.Random, objs: list[Obj]) -> Row:
    o = rng.choice([o for o in objs if o.countable])
    n = rng.choice(sorted(NUMBERS))
    return {
        "prompt": f"a photo of {NUMBERS[n]} {o.plural}",
        "include": [{"class": o.cls, "count": n}],
        "exclude": [{"class": o.cls, "count": n + 1}],
    }


def _colors(rng: random.Random, objs: list[Obj]) -> Row:
    o, c = rng.choice(objs), rng.choice(COLORS)
    return {
        "prompt": f"a photo of {article(f'{c} {o.text}')}",
        "include": [{"class": o.cls, "count": 1, "color": c}],
    }


def _position(rng: random.Random, objs: list[Obj]) -> Row:
    a, b = rng.sample(objs, 2)  # "a photo of A right of B": A's position relative to B
    rel = rng.choice(POSITIONS)
    return {
        "prompt": f"a photo of {article(a.text)} {rel} {article(b.text)}",
        "include": [
            {"class": b.cls, "count": 1},
            {"class": a.cls, "count": 1, "position": [rel, 0]},
        ],
    }


def _color_attr(rng: random.Random, objs: list[Obj]) -> Row:
    a, b = rng.sample(objs, 2)
    ca, cb = rng.sample(COLORS, 2)
    return {
        "prompt": f"a photo of {article(f'{ca} {a.text}')} and {article(f'{cb} {b.text}')}",
        "include": [
            {"class": a.cls, "count": 1, "color": ca},
            {"class": b.cls, "count": 1, "color": cb},
        ],
    }


def _noun_phrase(rng: random.Random, o: Obj) -> tuple[str, dict[str, Any]]:
    """A described object ("two small red cups") and its include entry (with a count)."""
    count = rng.choice((1, 1, 1, 2, 3)) if o.countable else 1
    words = []
    if rng.random() < 0.5:
        words.append(rng.choice(ATTRIBUTES))
    color = rng.choice(COLORS) if rng.random() < 0.6 else None
    if color:
        words.append(color)
    entry: dict[str, Any] = {"class": o.cls, "count": count}
    if color:
        entry["color"] = color
    if count == 1:
        return article(" ".join([*words, o.text])), entry
    return " ".join([NUMBERS[count], *words, o.plural]), entry


def _dense(rng: random.Random, objs: list[Obj]) -> Row:
    chosen = rng.sample(objs, rng.choice((2, 3, 3, 4)))
    phrases, include = zip(*(_noun_phrase(rng, o) for o in chosen), strict=True)
    include = [dict(e) for e in include]
    rel = rng.choice(RELATIONS)
    if rel in _RELATION_POSITION:  # object 0 relative to object 1, as GenEval records it
        include[0]["position"] = [_RELATION_POSITION[rel], 1]
    text = f"{rng.choice(STYLES)} {phrases[0]} {rel} {phrases[1]}"
    for k in range(2, len(chosen)):
        j = rng.randrange(k)  # an object already named: "the cup" or "the cups"
        anchor = chosen[j].plural if include[j]["count"] > 1 else chosen[j].text
        text += f", with {phrases[k]} {rng.choice(RELATIONS)} the {anchor}"
    text += f", {rng.choice(SETTINGS)}, {rng.choice(LIGHTING)}."
    return {"prompt": text, "include": include}


GENERATORS: dict[str, Callable[[random.Random, list[Obj]], Row]] = {
    "single_object": _single,
    "two_object": _two,
    "counting": _counting,
    "colors": _colors,
    "position": _position,
    "color_attr": _color_attr,
    "dense": _dense,
}


# -- exclusion files -------------------------------------------------------------------------
def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".jsonl")
        )
        if not found:
            raise ExcludeFileError(f"{path}: a directory without .txt or .jsonl prompt files")
        return found
    if not path.is_file():
        raise ExcludeFileError(f"{path}: no such file or directory")
    return [path]


def read_prompt_file(path: Path) -> list[str]:
    """Prompts in one file: JSON Lines with a ``prompt`` field (GenEval's
    ``evaluation_metadata.jsonl``), else plain text with one prompt per line (DPG-Bench
    keeps one prompt per ``.txt`` file)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExcludeFileError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines or not lines[0][1].startswith("{"):
        return [line for _, line in lines]
    prompts = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExcludeFileError(f"{path}:{n}: not a JSON object ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ExcludeFileError(f"{path}:{n}: no string 'prompt' field")
        prompts.append(row["prompt"])
    return prompts


def load_exclusions(paths: Iterable[str | Path]) -> set[str]:
    """Normalised prompts from evaluation files or directories of them."""
    out: set[str] = set()
    for path in paths:
        for file in _files(Path(path)):
            out.update(normalise(p) for p in read_prompt_file(file))
    return out


# -- the set ---------------------------------------------------------------------------------
@dataclass
class PromptSet:
    rows: list[Row]
    excluded: int = 0  # drawn prompts refused because an evaluation file holds them
    duplicates: int = 0  # drawn prompts refused because they were already drawn
    shortfall: dict[str, int] = field(default_factory=dict)  # quota moved off a full tag

    def counts(self) -> Counter:
        return Counter((r["tag"], r["split"]) for r in self.rows)


def _quotas(n: int, weights: dict[str, float]) -> dict[str, int]:
    """``n`` split in proportion to ``weights`` (largest remainders get the leftovers)."""
    total = sum(weights.values())
    raw = {t: n * w / total for t, w in weights.items()}
    out = {t: int(v) for t, v in raw.items()}
    rest = n - sum(out.values())
    for t in sorted(raw, key=lambda t: -(raw[t] - out[t]))[:rest]:
        out[t] += 1
    return out


def generate_prompts(
    kind: str,
    n: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    exclude: set[str] | None = None,
    objects_from: str = "extended",
    tags: Iterable[str] | None = None,
    max_misses: int = 3000,
) -> PromptSet:
    """``n`` distinct prompts of ``kind``, split into train and val.

    Each tag gets its share of ``n``; a tag that cannot make more distinct prompts
    (``max_misses`` draws in a row refused) hands its remaining share to the others. The
    val split takes ``val_fraction`` of every tag. ``tags`` keeps only some of the kind's
    categories. Raises :class:`PromptSpaceError` when ``n`` distinct prompts cannot be
    made."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if n < 1:
        raise ValueError(f"--n {n}: ask for at least one prompt")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    rng = random.Random(seed)
    objs = objects(objects_from)
    exclude = exclude or set()
    weights = KIND_WEIGHTS[kind]
    if tags is not None:
        chosen = list(dict.fromkeys(tags))
        unknown = [t for t in chosen if t not in weights]
        if unknown or not chosen:
            raise ValueError(
                f"--tags {','.join(chosen)}: {kind} prompts have the categories "
                f"{', '.join(weights)}"
            )
        weights = {t: weights[t] for t in chosen}
    quotas = _quotas(n, weights)
    seen: set[str] = set()
    made: dict[str, list[Row]] = {t: [] for t in weights}
    result = PromptSet(rows=[])
    full: set[str] = set()
    while True:
        for tag in weights:
            misses = 0
            while len(made[tag]) < quotas[tag] and tag not in full:
                row = GENERATORS[tag](rng, objs)
                key = normalise(row["prompt"])
                if key in exclude or key in seen:
                    if key in exclude:
                        result.excluded += 1
                    else:
                        result.duplicates += 1
                    misses += 1
                    if misses >= max_misses:
                        full.add(tag)
                    continue
                misses = 0
                seen.add(key)
                made[tag].append({"prompt": row["prompt"], "tag": tag, **row})
        missing = {t: quotas[t] - len(made[t]) for t in weights if len(made[t]) < quotas[t]}
        if not missing:
            break
        open_tags = [t for t in weights if t not in full]
        if not open_tags:
            total = sum(len(v) for v in made.values())
            raise PromptSpaceError(
                f"--n {n} cannot be reached: only {total} distinct {kind} prompts could be "
                f"made with seed {seed} ({result.excluded} draws matched excluded "
                f"evaluation prompts). Lower --n, add categories (--kind, --tags) or "
                f"objects (--objects extended)"
            )
        for t, k in missing.items():  # a full tag's share goes to the tags with room
            result.shortfall[t] = result.shortfall.get(t, 0) + k
            quotas[t] -= k
        extra = _quotas(sum(missing.values()), {t: weights[t] for t in open_tags})
        for t, k in extra.items():
            quotas[t] += k
    # the val split takes its fraction of every tag, so each category is evaluated
    for tag in weights:
        rows = made[tag]
        rng.shuffle(rows)
        n_val = round(len(rows) * val_fraction)
        for i, row in enumerate(rows):
            row["split"] = "val" if i < n_val else "train"
        result.rows.extend(rows)
    rng.shuffle(result.rows)
    return result


def write_jsonl(rows: Iterable[Row], path: str | Path) -> int:
    """Write ``rows`` one JSON object a line (keys in GenEval's order); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            ordered = {k: row[k] for k in ("tag", "include", "exclude", "prompt") if k in row}
            ordered.update({k: v for k, v in row.items() if k not in ordered})
            fh.write(json.dumps(ordered, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count
