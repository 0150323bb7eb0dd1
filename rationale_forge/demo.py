"""`forge demo`: the pipeline on the built-in sample, with no server and no API key."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .generate import GenerateConfig, GenerateStats, generate
from .ingest import IngestStats, ingest
from .paths import cache_dir
from .sources import SourceOptions
from .ui import console
from .vlm.errors import ModelUnavailableError
from .vlm.local import DEFAULT_LOCAL_MODEL

TINY_MODEL_WARNING = (
    "[bold yellow]WARNING: the local model {model} is not available:[/] {reason}\n"
    "[bold yellow]Falling back to a tiny RANDOMLY INITIALISED model.[/] Its rationales are "
    "gibberish; they only show that the whole pipeline runs. For real rationales, make the "
    "model available (see above) or point generate at a server "
    "(--backend openai --base-url URL)."
)


@dataclass
class DemoResult:
    ingested: str
    generated: str
    ingest: IngestStats
    generate: GenerateStats
    model: str
    fallback: bool


def tiny_model_dir() -> str:
    from .vlm.tiny import build_if_missing

    return str(build_if_missing(cache_dir() / "models" / "tiny-random-qwen2-vl"))


def run_demo(out: str = "runs/demo", model: str | None = None, progress: bool = True) -> DemoResult:
    """Ingest the sample, then generate with the local default model (or ``model``); when
    that model cannot be loaded, warn loudly and use a tiny random one."""
    ingested, generated = posixpath.join(out, "ingested"), posixpath.join(out, "rationales")
    ingest_stats = ingest(SourceOptions(kind="sample"), ingested, overwrite=True, progress=progress)
    wanted = model or DEFAULT_LOCAL_MODEL
    config = GenerateConfig(backend="transformers", model=wanted, overwrite=True)
    fallback = False
    try:
        stats = generate(ingested, generated, config, progress=progress)
    except ModelUnavailableError as exc:
        console.print(TINY_MODEL_WARNING.format(model=wanted, reason=exc))
        fallback = True
        config.model, config.max_tokens = tiny_model_dir(), 300
        stats = generate(ingested, generated, config, progress=progress)
    return DemoResult(ingested, generated, ingest_stats, stats, config.model, fallback)
