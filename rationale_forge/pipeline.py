"""`forge run PIPELINE.yaml`: source -> generate -> filter -> export (-> push) from one file.

The YAML maps onto the stage configs the commands build (``SourceOptions``,
``GenerateConfig``, ``FilterConfig``, ``ExportConfig``, push options); pydantic checks it,
and an error names the file, the key and its line. Stages write under ``out``::

    OUT/ingested/  OUT/rationales/  OUT/filtered/ (+ report/)  OUT/dataset/

Rerunning skips what is done: a stage whose manifest says it finished with the same
settings, on the same upstream result, is not run again; an unfinished one resumes (the
stages' own resume logic: keys already written, answers already cached, rows already
scored), and every stage after it runs again. A stage whose settings changed (or whose
upstream's did) starts over in its folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .export import ExportConfig, ExportStats, export, is_current
from .filter import FilterConfig, FilterStats, filter_run
from .generate import GenerateConfig, GenerateStats, generate
from .ingest import IngestStats, ingest
from .sources import SourceOptions
from .store import RunDir
from .ui import console

#: Settings that change how fast a stage runs, not what it writes: changing them does not
#: make a finished stage run again.
RUNTIME_ONLY = {
    "generate": {
        "concurrency",
        "workers",
        "timeout",
        "max_retries",
        "backoff_base",
        "rpm",
        "tpm",
        "batch_size",
        "device",
        "price_per_mtok",
        "overwrite",
        "retry_failed",
        "rows_per_shard",
    },
    "filter": {"workers", "device", "clip_batch_size", "overwrite", "rows_per_shard"},
}


class PipelineError(Exception):
    """A pipeline file that cannot be used, with the file, key and line named."""


class PushSpec(BaseModel):
    """Where to publish the exported dataset (``forge push-to-hub``'s options)."""

    model_config = ConfigDict(extra="forbid")

    repo_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = False
    revision: str | None = None
    endpoint: str | None = None  # default: HF_ENDPOINT or the public Hub
    files_per_commit: int = Field(default=100, ge=1)


class EngineSpec(BaseModel):
    """Where generate and filter run (``--engine``); it does not change what they write."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="local", pattern=r"^(local|ray)$")
    address: str | None = None  # ray: auto, HOST:6379 or ray://HOST:10001
    clip_actors: int | None = Field(default=None, ge=1)


class PipelineSpec(BaseModel):
    """One pipeline file."""

    model_config = ConfigDict(extra="forbid")

    out: str
    source: SourceOptions
    ingest: dict[str, int] = Field(default_factory=dict)  # workers, rows_per_shard, max_pixels
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    push: PushSpec | None = None
    engine: EngineSpec = Field(default_factory=EngineSpec)

    @model_validator(mode="before")
    @classmethod
    def _backend_default(cls, data: Any) -> Any:
        # As on the command line: a base_url means a server (openai), none a local model.
        if isinstance(data, dict) and isinstance(data.get("generate"), dict):
            gen = data["generate"]
            if "backend" not in gen:
                data = {
                    **data,
                    "generate": {
                        **gen,
                        "backend": "openai" if gen.get("base_url") else "transformers",
                    },
                }
        elif isinstance(data, dict) and data.get("generate") is None:
            data = {**data, "generate": {"backend": "transformers"}}
        return data

    @model_validator(mode="after")
    def _check(self) -> PipelineSpec:
        unknown = set(self.ingest) - {"workers", "rows_per_shard", "max_pixels"}
        if unknown:
            raise ValueError(f"ingest: unknown key(s) {', '.join(sorted(unknown))}")
        # A shell expands ~ in flags; YAML does not, so do it here.
        self.out = os.path.expanduser(self.out)
        if self.source.data_dir:
            self.source.data_dir = os.path.expanduser(self.source.data_dir)
        return self

    # The stage folders.
    def path(self, name: str) -> str:
        return posixpath.join(self.out, name)

    @property
    def ingested(self) -> str:
        return self.path("ingested")

    @property
    def generated(self) -> str:
        return self.path("rationales")

    @property
    def filtered(self) -> str:
        return self.path("filtered")

    @property
    def dataset(self) -> str:
        return self.path("dataset")


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == str(part):
                line, node = key.start_mark.line + 1, value
                break
        else:
            break
    return line


def load_pipeline(path: str | Path, out: str | None = None) -> PipelineSpec:
    """Read and check a pipeline file; ``out`` overrides its ``out``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineError(
            f"{path}: cannot read the pipeline file ({exc.strerror or exc})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping with source, generate, filter, export")
    if out is not None:
        data["out"] = out
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(text, loc)
            msg = err["msg"]
            if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                msg = "unknown key"
            elif err["type"] == "missing" or err["type"] == "missing_argument":
                msg = "required key missing"
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {key}: {msg}")
        raise PipelineError("invalid pipeline file\n  " + "\n  ".join(problems)) from None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_specs(spec: PipelineSpec) -> dict[str, str]:
    """A digest of each stage's output-shaping settings, chained through its upstream, so a
    change to the source makes every later stage run again."""
    source = asdict(spec.source)
    digests: dict[str, str] = {}
    digests["ingest"] = _digest({"source": source, "max_pixels": spec.ingest.get("max_pixels")})
    gen = {k: v for k, v in asdict(spec.generate).items() if k not in RUNTIME_ONLY["generate"]}
    digests["generate"] = _digest({"up": digests["ingest"], "config": gen})
    flt = {k: v for k, v in asdict(spec.filter).items() if k not in RUNTIME_ONLY["filter"]}
    digests["filter"] = _digest({"up": digests["generate"], "config": flt})
    return digests


def _finished(run_dir: str, stage: str) -> dict[str, Any]:
    return (RunDir(run_dir).read_manifest().get("stages") or {}).get(stage) or {}


def _is_done(run_dir: str, stage: str, digest: str, upstream: str | None) -> bool:
    record = _finished(run_dir, stage)
    return (
        record.get("status") == "done"
        and record.get("pipeline_spec") == digest
        and record.get("pipeline_input") == upstream
    )


def _start_over(run_dir: str, stage: str, digest: str) -> bool:
    """True when the stage's folder holds a pipeline run made with other settings: its
    results (and, for generate, its answers) do not apply, so the stage starts over."""
    recorded = _finished(run_dir, stage).get("pipeline_spec")
    if recorded is not None and recorded != digest:
        console.print(f"[bold]{stage}[/]: settings changed since the last run, starting over")
        return True
    return False


def _mark(run_dir: str, stage: str, digest: str, upstream: str | None) -> str | None:
    """Record in the stage's manifest which pipeline settings and which upstream result it
    finished with; returns its finish time (the next stage's ``pipeline_input``)."""
    RunDir(run_dir).update_stage(stage, {"pipeline_spec": digest, "pipeline_input": upstream})
    return _finished(run_dir, stage).get("finished_at")


@dataclass
class PipelineResult:
    spec: PipelineSpec
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ingest: IngestStats | None = None
    generate: GenerateStats | None = None
    filter: FilterStats | None = None
    export: ExportStats | None = None
    report: str | None = None
    pushed: Any = None

    @property
    def dataset(self) -> str:
        return self.spec.dataset


def run_pipeline(
    spec: PipelineSpec,
    *,
    overwrite: bool = False,
    push: bool = True,
    progress: bool = True,
    on_generate_error: Callable[[Exception, PipelineSpec], PipelineSpec | None] | None = None,
    on_filter_error: Callable[[Exception, PipelineSpec], PipelineSpec | None] | None = None,
) -> PipelineResult:
    """Run every stage of ``spec`` that is not done yet. ``overwrite`` starts every stage
    over. The ``on_*_error`` hooks may return a changed spec to retry that stage with
    (``forge demo`` swaps in tiny models when weights are missing)."""
    from .engines import make_engine
    from .report import write_report

    result = PipelineResult(spec)
    digests = stage_specs(spec)
    engine = make_engine(spec.engine.name, spec.engine.address, spec.engine.clip_actors)

    def log_skip(stage: str, where: str) -> None:
        result.skipped.append(stage)
        console.print(f"[bold]{stage}[/]: already done in {where}, skipped")

    # ingest
    upstream = None
    if not overwrite and _is_done(spec.ingested, "ingest", digests["ingest"], upstream):
        log_skip("ingest", spec.ingested)
    else:
        result.ingest = ingest(
            replace(spec.source),
            spec.ingested,
            overwrite=overwrite or _start_over(spec.ingested, "ingest", digests["ingest"]),
            progress=progress,
            **spec.ingest,
        )
        result.ran.append("ingest")
    upstream = _mark(spec.ingested, "ingest", digests["ingest"], upstream)

    def run_model_stage(stage, run, out, config_of, on_error):
        """generate/filter: run, and once more with the spec ``on_error`` returns, if any."""
        nonlocal spec, digests
        fresh = overwrite or _start_over(out(spec), stage, digests[stage])
        config = config_of(spec)
        config = replace(config, overwrite=overwrite or fresh or config.overwrite)
        try:
            return run(spec, config)
        except Exception as exc:
            changed = on_error(exc, spec) if on_error else None
            if changed is None:
                raise
            spec = result.spec = changed
            digests = stage_specs(spec)
            config = config_of(spec)
            return run(spec, replace(config, overwrite=overwrite or config.overwrite))

    # generate
    if not overwrite and _is_done(spec.generated, "generate", digests["generate"], upstream):
        log_skip("generate", spec.generated)
    else:
        result.generate = run_model_stage(
            "generate",
            lambda sp, cfg: generate(
                sp.ingested, sp.generated, cfg, progress=progress, engine=engine
            ),
            lambda sp: sp.generated,
            lambda sp: sp.generate,
            on_generate_error,
        )
        result.ran.append("generate")
    upstream = _mark(spec.generated, "generate", digests["generate"], upstream)

    # filter (+ its report)
    if not overwrite and _is_done(spec.filtered, "filter", digests["filter"], upstream):
        log_skip("filter", spec.filtered)
        report = Path(spec.filtered) / "report" / "index.html"
        result.report = str(report if report.exists() else write_report(spec.filtered))
    else:
        result.filter = run_model_stage(
            "filter",
            lambda sp, cfg: filter_run(
                sp.generated, sp.filtered, cfg, progress=progress, engine=engine
            ),
            lambda sp: sp.filtered,
            lambda sp: sp.filter,
            on_filter_error,
        )
        result.ran.append("filter")
        result.report = str(write_report(spec.filtered))
    _mark(spec.filtered, "filter", digests["filter"], upstream)

    # export
    if not overwrite and is_current(spec.filtered, spec.dataset, spec.export):
        log_skip("export", spec.dataset)
    else:
        config = replace(spec.export, overwrite=overwrite or spec.export.overwrite)
        result.export = export(spec.filtered, spec.dataset, config, progress=progress)
        result.ran.append("export")

    # push
    if push and spec.push is not None:
        from .hub import PushConfig, push_to_hub

        result.pushed = push_to_hub(
            spec.dataset,
            PushConfig(
                repo_id=spec.push.repo_id,
                private=spec.push.private,
                revision=spec.push.revision,
                endpoint=spec.push.endpoint,
                files_per_commit=spec.push.files_per_commit,
            ),
            progress=progress,
        )
        result.ran.append("push")
    return result
