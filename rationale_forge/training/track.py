"""Training logs: scalars to the console, a JSONL file and whichever trackers are installed
(TensorBoard, trackio, Weights & Biases), and image grids of samples as PNG files.

Trackers are looked up lazily, when the :class:`Tracker` is made, so none of them is a
dependency; without any, the console and ``OUT/metrics.jsonl`` are the log.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..images import to_rgb

log = logging.getLogger(__name__)

BACKENDS = ("tensorboard", "trackio", "wandb")


def image_grid(
    images: Sequence[Image.Image],
    cols: int | None = None,
    captions: Sequence[str] | None = None,
    cell: int | None = None,
    caption_lines: int = 3,
) -> Image.Image:
    """Images in a grid, ``cols`` per row (default: a square-ish grid), each scaled to fit
    a ``cell``-pixel square (the largest image side by default) and centred; with
    ``captions``, the text (wrapped, at most ``caption_lines`` lines) is written under each
    image."""
    if not images:
        raise ValueError("image_grid: no images")
    if cols is None:
        cols = math.ceil(math.sqrt(len(images)))
    if not isinstance(cols, int):
        raise TypeError(
            f"image_grid: cols must be an int, got {type(cols).__name__} "
            f"(captions go in captions=...)"
        )
    if cols < 1:
        raise ValueError(f"image_grid: cols {cols} must be >= 1")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"image_grid: {len(images)} images but {len(captions)} captions")
    cell = cell or max(max(im.size) for im in images)
    font = ImageFont.load_default()
    line_h = 12
    chars = max(8, cell // 6)  # the default bitmap font is about 6 px per character
    text_h = (caption_lines * line_h + 4) if captions is not None else 0
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * cell, rows * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, img in enumerate(images):
        x, y = (i % cols) * cell, (i // cols) * (cell + text_h)
        tile = to_rgb(img)
        if tile.size != (cell, cell):
            tile = tile.copy()
            tile.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            if max(tile.size) < cell:  # small images are scaled up to the cell
                factor = cell / max(tile.size)
                size = (max(1, round(tile.width * factor)), max(1, round(tile.height * factor)))
                tile = tile.resize(size, Image.Resampling.NEAREST)
        grid.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
        if captions is not None:
            lines = textwrap.wrap(str(captions[i]), chars)[:caption_lines]
            for k, line in enumerate(lines):
                draw.text((x + 2, y + cell + 2 + k * line_h), line, fill=(0, 0, 0), font=font)
    return grid


def available_backends() -> list[str]:
    """Trackers importable here (looked up without importing them)."""
    found = []
    if importlib.util.find_spec("tensorboard") is not None:
        found.append("tensorboard")
    for name in ("trackio", "wandb"):
        if importlib.util.find_spec(name) is not None:
            found.append(name)
    return found


class Tracker:
    """Logs scalars and image grids for a run under ``out_dir``.

    ``backends``: ``"auto"`` (every installed tracker), ``"none"``, or a list of names
    from :data:`BACKENDS`; asking for one that is not installed is an error. Scalars always
    go to ``out_dir/metrics.jsonl`` and, every ``console_every`` steps, to the log.
    ``log_images`` writes ``out_dir/images/{name}_{step:06d}.png`` every ``image_every``
    steps."""

    def __init__(
        self,
        out_dir: str | Path,
        backends: str | Sequence[str] = "auto",
        project: str = "rationale-forge",
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        image_every: int = 50,
        console_every: int = 1,
    ):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.image_every = max(1, image_every)
        self.console_every = max(1, console_every)
        if backends == "auto":
            names = available_backends()
        elif backends in ("none", None):
            names = []
        else:
            names = [backends] if isinstance(backends, str) else list(backends)
        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown tracker(s) {unknown}: expected {', '.join(BACKENDS)}")
        missing = [n for n in names if n not in available_backends()]
        if missing:
            raise ValueError(
                f"tracker(s) {missing} not installed (pip install {' '.join(missing)})"
            )
        self.backends = names
        self._metrics = open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._tb = self._trackio = self._wandb = None
        run_name = run_name or self.out_dir.name
        cfg = dict(config or {})
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        if "trackio" in names:
            import trackio

            self._trackio = trackio
            trackio.init(project=project, name=run_name, config=cfg)
        if "wandb" in names:
            import wandb

            self._wandb = wandb.init(
                project=project, name=run_name, config=cfg, dir=str(self.out_dir)
            )
        log.info(
            "logging to %s/metrics.jsonl%s",
            self.out_dir,
            f" and {', '.join(names)}" if names else "",
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Scalars for ``step`` (values that are not numbers are skipped)."""
        scalars = {}
        for key, value in metrics.items():
            try:
                scalars[key] = float(value)
            except (TypeError, ValueError):
                continue
        row = {"step": step, "time": round(time.time(), 3), **scalars}
        # NaN/inf are not JSON: written as null so every line stays parseable
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()
        }
        self._metrics.write(json.dumps(clean) + "\n")
        self._metrics.flush()
        if step % self.console_every == 0:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in scalars.items())
            log.info("step %d  %s", step, shown)
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self._trackio is not None:
            self._trackio.log(scalars, step=step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def log_images(
        self,
        images: Sequence[Image.Image] | Mapping[str, Image.Image],
        step: int,
        captions: Sequence[str] | None = None,
        name: str = "samples",
        cols: int | None = None,
        force: bool = False,
    ) -> Path | None:
        """A grid of ``images`` (with ``captions``) every ``image_every`` steps (or when
        ``force``); returns the PNG's path, or None when this step is skipped. A mapping
        ``{name: image}`` logs ready-made images (grids) under their names instead (the
        path of the last one is returned)."""
        if not images or (step % self.image_every and not force):
            return None
        if isinstance(images, Mapping):
            path = None
            for key, picture in images.items():
                path = self._log_picture(to_rgb(picture), step, key)
            return path
        return self._log_picture(image_grid(images, cols, captions), step, name)

    def _log_picture(self, grid: Image.Image, step: int, name: str) -> Path:
        folder = self.out_dir / "images"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}_{step:06d}.png"
        grid.save(path)
        if self._tb is not None:
            import numpy as np

            self._tb.add_image(name, np.asarray(grid), step, dataformats="HWC")
        if self._trackio is not None:
            self._trackio.log({name: self._trackio.Image(grid)}, step=step)
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(grid)}, step=step)
        return path

    def close(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()
        if self._trackio is not None:
            self._trackio.finish()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
