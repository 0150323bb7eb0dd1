"""`forge demo`: the whole pipeline on the built-in sample, with no server and no API key.

It is ``forge run`` on a pipeline built in code (ingest -> generate -> filter -> report ->
export); models whose weights cannot be loaded are replaced by tiny random ones, loudly.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from .export import ExportConfig, ExportStats
from .filter import FilterConfig, FilterStats
from .filters.clip import ClipUnavailableError
from .generate import GenerateConfig, GenerateStats
from .ingest import IngestStats
from .paths import cache_dir
from .pipeline import PipelineSpec, run_pipeline
from .schema import TEXT_CHECKS
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

#: Checks that judge what a rationale says. Gibberish from the tiny random model fails them
#: all, which would leave nothing to export; with the fallback they are switched off (and
#: the card's provenance says so) so the export and the card can still be seen.
#: (Structure checks stay on: whether the answer has its facets and prompt variants.)
CONTENT_CHECKS = tuple(c for c in TEXT_CHECKS if c not in ("facets", "variants"))

CONTENT_WARNING = (
    "[bold yellow]WARNING: with the tiny random model, the content checks "
    f"({', '.join(CONTENT_CHECKS)}) are switched off[/] so that some rows reach the "
    "export; the demo dataset is gibberish and only shows the pipeline's output."
)


@dataclass
class DemoResult:
    ingested: str
    generated: str
    filtered: str
    report: str
    dataset: str
    ingest: IngestStats | None
    generate: GenerateStats | None
    filter: FilterStats | None
    export: ExportStats | None
    model: str
    fallback: bool


def tiny_model_dir() -> str:
    from .vlm.tiny import build_if_missing

    return str(build_if_missing(cache_dir() / "models" / "tiny-random-qwen2-vl"))


def demo_spec(out: str, model: str | None = None) -> PipelineSpec:
    """The demo pipeline: the sample, the local default model, the default filter, a
    split with a test share large enough to be seen on 24 images."""
    return PipelineSpec(
        out=out,
        source=SourceOptions(kind="sample"),
        generate=GenerateConfig(backend="transformers", model=model or DEFAULT_LOCAL_MODEL),
        filter=FilterConfig(),
        export=ExportConfig(test_size=0.2),
    )


def run_demo(out: str = "runs/demo", model: str | None = None, progress: bool = True) -> DemoResult:
    """Run the demo pipeline from scratch into ``out``. A model or CLIP whose weights cannot
    be loaded is replaced by a tiny random one, with a loud warning."""
    spec = demo_spec(out, model)
    fallback = False

    def on_generate_error(exc: Exception, spec: PipelineSpec) -> PipelineSpec | None:
        nonlocal fallback
        if not isinstance(exc, ModelUnavailableError):
            return None
        console.print(TINY_MODEL_WARNING.format(model=spec.generate.model, reason=exc))
        console.print(CONTENT_WARNING)
        fallback = True
        return spec.model_copy(
            update={
                "generate": replace(
                    spec.generate, model=tiny_model_dir(), max_tokens=300, overwrite=True
                ),
                "filter": replace(spec.filter, disable=list(CONTENT_CHECKS)),
            }
        )

    def on_filter_error(exc: Exception, spec: PipelineSpec) -> PipelineSpec | None:
        if not isinstance(exc, ClipUnavailableError):
            return None
        from .filters.tiny_clip import build_tiny_clip

        console.print(CLIP_WARNING.format(reason=exc))
        clip_model, clip_pretrained = build_tiny_clip(cache_dir() / "models" / "tiny-random-clip")
        return spec.model_copy(
            update={
                "filter": replace(
                    spec.filter,
                    clip_model=clip_model,
                    clip_pretrained=clip_pretrained,
                    overwrite=True,
                )
            }
        )

    console.print(f"[bold]demo[/]: starting from scratch in {out} (earlier output replaced)")
    result = run_pipeline(
        spec,
        overwrite=True,
        progress=progress,
        on_generate_error=on_generate_error,
        on_filter_error=on_filter_error,
    )
    spec = result.spec
    return DemoResult(
        ingested=spec.ingested,
        generated=spec.generated,
        filtered=spec.filtered,
        report=result.report or posixpath.join(spec.filtered, "report", "index.html"),
        dataset=spec.dataset,
        ingest=result.ingest,
        generate=result.generate,
        filter=result.filter,
        export=result.export,
        model=spec.generate.model or "",
        fallback=fallback,
    )
