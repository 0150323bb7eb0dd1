"""`forge demo`: the pipeline on the built-in sample, with no server and no API key."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .filter import FilterConfig, FilterStats, filter_run
from .filters.clip import ClipUnavailableError
from .filters.tiny_clip import build_tiny_clip
from .generate import GenerateConfig, GenerateStats, generate
from .ingest import IngestStats, ingest
from .paths import cache_dir
from .report import write_report
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


CLIP_WARNING = (
    "[bold yellow]WARNING: the CLIP weights are not available:[/] {reason}\n"
    "[bold yellow]Scoring with a tiny RANDOMLY INITIALISED CLIP instead[/]: its scores are "
    "noise; the rule checks and dedup are real."
)


@dataclass
class DemoResult:
    ingested: str
    generated: str
    filtered: str
    report: str
    ingest: IngestStats
    generate: GenerateStats
    filter: FilterStats
    model: str
    fallback: bool


def tiny_model_dir() -> str:
    from .vlm.tiny import build_if_missing

    return str(build_if_missing(cache_dir() / "models" / "tiny-random-qwen2-vl"))


def run_demo(out: str = "runs/demo", model: str | None = None, progress: bool = True) -> DemoResult:
    """Ingest the sample, generate with the local default model (or ``model``), filter with
    the default CLIP and rules, and write the report. A model or CLIP whose weights cannot
    be loaded is replaced by a tiny random one, with a loud warning."""
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
    filtered = posixpath.join(out, "filtered")
    filter_config = FilterConfig(overwrite=True)
    try:
        filter_stats = filter_run(generated, filtered, filter_config, progress=progress)
    except ClipUnavailableError as exc:
        console.print(CLIP_WARNING.format(reason=exc))
        filter_config.clip_model, filter_config.clip_pretrained = build_tiny_clip(
            cache_dir() / "models" / "tiny-random-clip"
        )
        filter_stats = filter_run(generated, filtered, filter_config, progress=progress)
    report = str(write_report(filtered))
    return DemoResult(
        ingested,
        generated,
        filtered,
        report,
        ingest_stats,
        stats,
        filter_stats,
        config.model,
        fallback,
    )
