"""Reading benchmark prompt files in their official formats.

Nothing is bundled: every reader takes the path the user gives and returns
:class:`BenchPrompt` items in the order the official generation scripts use. Bad input
raises :class:`BenchmarkInputError` naming the file (and line) and the cause.

* ``geneval``: GenEval's ``evaluation_metadata.jsonl``, one JSON object per line with at
  least ``prompt`` and ``tag`` (the task: single_object, two_object, counting, colors,
  position, color_attr). Prompt *i* (0-based, blank lines skipped) becomes folder ``i:05d``.
* ``dpg``: DPG-Bench's ``prompts/`` directory, one ``<item_id>.txt`` per prompt. The scorer
  keys images by the part of the file name before the first dot, so names with dots are
  refused. Categories come from ``dpg_bench.csv`` (given, or found beside ``prompts/``).
* ``t2i-compbench``: T2I-CompBench prompt files (``color_val.txt``, ``spatial_val.txt``,
  ...), one file or a directory of them; the category is the file name without ``_val``.
  The scorers read each prompt back from the image file name (text before the first
  ``_``), so prompts containing ``_`` or ``/`` are refused.
* ``prompts``: a plain list, one prompt per line (``.txt``) or JSON Lines with ``prompt``
  and an optional ``tag``/``category`` (``forge prompts`` writes GenEval-style lines).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHES = ("geneval", "dpg", "t2i-compbench", "prompts")

#: GenEval's six tasks, in the order its paper's tables list them.
GENEVAL_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

#: File names are limited to 255 bytes on common filesystems.
MAX_NAME_BYTES = 255


class BenchmarkInputError(ValueError):
    """A prompt file that cannot be used as given; the message names the file and line."""


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt.

    ``key`` names its output (GenEval folder index, DPG item id, ...); ``categories`` are
    the groups its score counts towards; ``metadata`` is the original record where the
    official layout copies it (GenEval's metadata line)."""

    key: str
    prompt: str
    categories: tuple[str, ...]
    source: str  # "file:line" or the file, for messages
    metadata: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def category(self) -> str:
        """The first (main) category."""
        return self.categories[0]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file, with a clear error otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchmarkInputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise BenchmarkInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except IsADirectoryError:
        raise BenchmarkInputError(f"{path}: is a directory, expected a file") from None
    yield from enumerate(text.splitlines(), start=1)


def _json_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BenchmarkInputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise BenchmarkInputError(f"{path}:{lineno}: expected a JSON object")
    return obj


def _text_field(obj: dict[str, Any], name: str, where: str, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BenchmarkInputError(f"{where}: field {name!r} missing or not a non-empty string")
    return value


def _nonempty(prompts: list[BenchPrompt], path: Path) -> list[BenchPrompt]:
    if not prompts:
        raise BenchmarkInputError(f"{path}: no prompts found")
    return prompts


def read_geneval(path: str | Path) -> list[BenchPrompt]:
    """GenEval's ``evaluation_metadata.jsonl`` (or any file in its format)."""
    path = Path(path)
    prompts: list[BenchPrompt] = []
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        obj = _json_line(path, lineno, line)
        prompt = _text_field(obj, "prompt", where)
        tag = _text_field(obj, "tag", where)
        if not isinstance(obj.get("include", []), list):
            raise BenchmarkInputError(f"{where}: field 'include' must be a list")
        key = f"{len(prompts):05d}"
        prompts.append(BenchPrompt(key, prompt, (tag,), where, obj))
    return _nonempty(prompts, path)


def _natural_key(name: str) -> tuple:
    """Sort ``2.txt`` before ``10.txt``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def dpg_categories(csv_path: str | Path) -> dict[str, tuple[str, ...]]:
    """Item id -> its level-1 categories (entity, attribute, relation, global, other), read
    from DPG-Bench's ``dpg_bench.csv`` the way its scorer groups questions: the ``tuple``
    column's text before ``(``, then before ``-``."""
    csv_path = Path(csv_path)
    found: dict[str, dict[str, None]] = {}
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"item_id", "tuple"} - set(reader.fieldnames or ())
            if missing:
                raise BenchmarkInputError(
                    f"{csv_path}: missing column(s) {', '.join(sorted(missing))}"
                )
            for lineno, row in enumerate(reader, start=2):
                item, tup = (row.get("item_id") or "").strip(), (row.get("tuple") or "").strip()
                if not item or not tup:
                    raise BenchmarkInputError(f"{csv_path}:{lineno}: empty item_id or tuple")
                level1 = tup.split("(")[0].split("-")[0].strip()
                found.setdefault(item, {})[level1] = None
    except FileNotFoundError:
        raise BenchmarkInputError(f"{csv_path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise BenchmarkInputError(f"{csv_path}: not UTF-8 text ({exc.reason})") from None
    return {item: tuple(cats) for item, cats in found.items()}


def read_dpg(path: str | Path, csv_path: str | Path | None = None) -> list[BenchPrompt]:
    """DPG-Bench's prompt directory (``<item_id>.txt`` files). ``csv_path`` (default:
    ``dpg_bench.csv`` beside the directory, when present) gives the categories; without it
    every prompt counts towards ``all``."""
    path = Path(path)
    if not path.is_dir():
        raise BenchmarkInputError(f"{path}: DPG-Bench prompts must be a directory of .txt files")
    if csv_path is None and (path.parent / "dpg_bench.csv").is_file():
        csv_path = path.parent / "dpg_bench.csv"
    categories = dpg_categories(csv_path) if csv_path is not None else None
    prompts: list[BenchPrompt] = []
    for file in sorted(path.glob("*.txt"), key=lambda p: _natural_key(p.name)):
        key = file.name[: -len(".txt")]
        if "." in key:
            raise BenchmarkInputError(
                f"{file}: the DPG-Bench scorer keys images by the name before the first dot; "
                "rename it without dots"
            )
        text = " ".join(line.strip() for _, line in _lines(file)).strip()
        if not text:
            raise BenchmarkInputError(f"{file}: empty prompt")
        if categories is None:
            cats: tuple[str, ...] = ("all",)
        else:
            cats = categories.get(key, ())
            if not cats:
                raise BenchmarkInputError(f"{file}: item {key!r} not found in {csv_path}")
        prompts.append(BenchPrompt(key, text, cats, str(file)))
    return _nonempty(prompts, path)


def t2i_category(file: Path) -> str:
    """``color_val.txt`` -> ``color``; ``non_spatial_val.txt`` -> ``non_spatial``."""
    return file.stem.removesuffix("_val")


def check_t2i_prompt(prompt: str, where: str) -> None:
    """Refuse prompts the T2I-CompBench scorers cannot read back from a file name."""
    for char, why in (("/", "cannot be part of a file name"), ("\0", "cannot be in a name")):
        if char in prompt:
            raise BenchmarkInputError(f"{where}: prompt contains {char!r}, which {why}")
    if "_" in prompt:
        raise BenchmarkInputError(
            f"{where}: prompt contains '_'; T2I-CompBench's scorers take the prompt from the "
            "image name up to the first '_'"
        )
    if len(f"{prompt}_000000.png".encode()) > MAX_NAME_BYTES:
        raise BenchmarkInputError(
            f"{where}: prompt too long to be a file name ({MAX_NAME_BYTES} bytes at most)"
        )


def read_t2i_compbench(path: str | Path) -> list[BenchPrompt]:
    """One T2I-CompBench prompt file or a directory of them (``*_val.txt`` when any exist,
    else every ``*.txt``); each line's text before a tab is the prompt, as in the official
    generation script. Keys are ``<category>/<position in the category>``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*_val.txt")) or sorted(path.glob("*.txt"))
        if not files:
            raise BenchmarkInputError(f"{path}: no .txt prompt files in this directory")
    else:
        files = [path]
    prompts: list[BenchPrompt] = []
    seen: dict[str, Path] = {}
    for file in files:
        category = t2i_category(file)
        if category in seen:
            raise BenchmarkInputError(
                f"{file}: category {category!r} also given by {seen[category]}"
            )
        seen[category] = file
        position = 0
        for lineno, line in _lines(file):
            text = line.split("\t")[0].strip()
            if not text:
                continue
            where = f"{file}:{lineno}"
            check_t2i_prompt(text, where)
            prompts.append(BenchPrompt(f"{category}/{position}", text, (category,), where))
            position += 1
    return _nonempty(prompts, path)


def read_prompt_list(path: str | Path, split: str | None = None) -> list[BenchPrompt]:
    """A plain prompt list: JSON Lines (``.jsonl``, ``prompt`` plus optional ``tag`` or
    ``category``) or text, one prompt per line. ``split`` keeps only JSON rows whose
    ``split`` field has that value (``forge prompts`` marks train and val rows)."""
    path = Path(path)
    prompts: list[BenchPrompt] = []
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        key = f"{len(prompts):05d}"
        if is_jsonl:
            obj = _json_line(path, lineno, line)
            if split is not None and obj.get("split") != split:
                continue
            prompt = _text_field(obj, "prompt", where)
            category = _text_field(obj, "tag", where, required=False) or _text_field(
                obj, "category", where, required=False
            )
            prompts.append(BenchPrompt(key, prompt, (category or "all",), where, obj))
        else:
            prompts.append(
                BenchPrompt(key, line.strip(), ("all",), where, {"prompt": line.strip()})
            )
    if split is not None and not prompts:
        raise BenchmarkInputError(f"{path}: no rows with split {split!r}")
    return _nonempty(prompts, path)


def read_prompts(
    bench: str, path: str | Path, dpg_csv: str | Path | None = None, split: str | None = None
) -> list[BenchPrompt]:
    """The prompts of ``bench`` from ``path`` (``split``: prompt lists only)."""
    if split is not None and bench != "prompts":
        raise BenchmarkInputError("a prompt split applies to --bench prompts only")
    if bench == "geneval":
        return read_geneval(path)
    if bench == "dpg":
        return read_dpg(path, dpg_csv)
    if bench == "t2i-compbench":
        return read_t2i_compbench(path)
    if bench == "prompts":
        return read_prompt_list(path, split)
    raise BenchmarkInputError(f"unknown benchmark {bench!r}; choose one of {', '.join(BENCHES)}")
