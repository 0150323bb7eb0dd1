"""The Ray engine: the same stages on a Ray cluster, through Ray Data.

Each stage becomes a Ray Data pipeline over the input run's shards: one shard per task,
read by the worker (any fsspec filesystem), fed to the same core the local engine runs
(:class:`~rationale_forge.generate.Answerer`, :class:`~rationale_forge.filter.RowScorer`,
:class:`~rationale_forge.filter.Decisions`) through ``map_batches``, and written as the
same-named shard of the output run (:mod:`.shards`). Models live in actor pools: a CLIP
replica per GPU (or per CPU without GPUs), an in-process vLLM per GPU; HTTP backends run
in CPU actors that share ``--concurrency`` between them.

Resume: a finished shard is marked in ``RUN/_progress/``; a restarted job skips marked
shards, and the request cache answers every request a crashed try had received. Ray
retries the task of a worker that dies (actors are restarted and their tasks resent).

The filter's decisions that need the whole run (CLIP thresholds by quantile, duplicate
clusters) are computed on the driver from a few columns, exactly as the local engine does;
applying them to the rows is again one task per shard.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import posixpath
import re
from dataclasses import replace
from typing import Any

from ..cache import RequestCache, cache_path
from ..filter import (
    KEPT,
    REJECTED,
    SCORED,
    FilterConfig,
    FilterStats,
    RowScorer,
    decisions,
    load_clip,
)
from ..generate import GenerateConfig, GenerateStats, backend_identity, make_backend
from ..ingest import RunConflictError, prepare_run
from ..prompting import PromptTemplate, load_template
from ..provenance import redact_argv
from ..sources import SourceOptions
from ..store import RunDir, recorded_stage
from ..ui import ProgressBar
from . import EngineError
from .shards import (
    Markers,
    decide_shard,
    generate_shard,
    generate_stats_from_json,
    score_shard,
    shard_rows,
    shards_with_failures,
    stats_to_json,
)


class RayEngineError(EngineError):
    """A Ray job failed, or Ray is missing; the message says why."""


def check_engine(run: RunDir, stage: str, subdir: str, engine: str) -> None:
    """Refuse to resume output another engine wrote: the engines lay shards out
    differently (numbered in order vs one per input shard)."""
    previous = run.read_manifest().get("stages", {}).get(stage) or {}
    made_by = (previous.get("engine") or {}).get("name", "local")
    if made_by != engine and run.shards(subdir):
        raise RunConflictError(
            f"{run.url} holds a '{stage}' run made by the {made_by} engine: resume it with "
            f"--engine {made_by}, or pass --overwrite to start over with --engine {engine}"
        )


# -- workers (Ray Data UDFs; plain classes, run inside Ray workers) ---------------------
class GenerateWorker:
    """Holds a backend, the request cache and an event loop; generates shard after
    shard."""

    def __init__(
        self,
        source: str,
        out: str,
        config: GenerateConfig,
        template: PromptTemplate,
        secrets: dict[str, str],
    ):
        os.environ.update(secrets)  # the API key, from the driver's environment
        self.source, self.out = RunDir(source), RunDir(out)
        self.config, self.template = config, template
        self.backend = make_backend(config)
        self.cache = RequestCache(cache_path(self.out))
        self.loop = asyncio.new_event_loop()  # kept: the backend's connections live on it

    def __call__(self, batch):
        import pyarrow as pa

        shards = batch.column("shard").to_pylist()
        stats = [
            generate_shard(
                self.source,
                self.out,
                shard,
                backend=self.backend,
                cache=self.cache,
                template=self.template,
                config=self.config,
                loop=self.loop,
            )
            for shard in shards
        ]
        return pa.table({"shard": shards, "stats": [stats_to_json(s) for s in stats]})

    def __del__(self) -> None:  # Ray Data deletes the UDF when it retires the actor
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(self.backend.aclose())
            loop.close()
        if getattr(self, "cache", None) is not None:
            self.cache.close()


class ScoreWorker:
    """Holds one CLIP replica (on this worker's GPU, if it has one) and the rule checks;
    scores shard after shard."""

    def __init__(self, source: str, out: str, config: FilterConfig):
        self.source, self.out, self.config = RunDir(source), RunDir(out), config
        self.scorer = RowScorer(config, load_clip(config))

    def __call__(self, batch):
        import pyarrow as pa

        shards = batch.column("shard").to_pylist()
        rows = [
            score_shard(self.source, self.out, s, self.scorer, self.config, SCORED) for s in shards
        ]
        return pa.table({"shard": shards, "rows": rows})


def decide_batch(batch, out: str, decided):
    """Apply the run-wide decisions to the scored shards named in ``batch``."""
    import pyarrow as pa
    import ray

    if isinstance(decided, ray.ObjectRef):
        decided = ray.get(decided)
    run = RunDir(out)
    shards = batch.column("shard").to_pylist()
    stats = [decide_shard(run, s, decided, SCORED, KEPT, REJECTED) for s in shards]
    return pa.table({"shard": shards, "stats": [stats_to_json(s) for s in stats]})


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): (.+)$")


def worker_error(exc: BaseException) -> str:
    """The worker's own error (``ValueError: ...``) from the traceback text Ray wraps it
    in; Ray's wrapper when there is none."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__
    for link in chain:
        for line in str(link).splitlines():
            match = _ERROR_LINE.match(line.strip())
            if match and not match.group(1).startswith("ray."):
                return f"{match.group(1)}: {match.group(2)[:500]}"
    last = chain[-1]
    return f"{type(last).__name__}: {(str(last).strip().splitlines() or [''])[0][:500]}"


# -- the engine ------------------------------------------------------------------------
class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, clip_actors: int | None = None):
        if clip_actors is not None and clip_actors < 1:
            raise ValueError(f"--clip-actors must be at least 1, got {clip_actors}")
        self.address = address
        self.clip_actors = clip_actors
        self.cluster: dict[str, int] = {}

    # -- cluster -------------------------------------------------------------------------
    def connect(self) -> dict[str, int]:
        """Join the cluster (or start Ray on this machine); returns its size."""
        try:
            import ray
            import ray.data
        except ImportError as exc:
            raise RayEngineError(
                "--engine ray needs Ray: pip install 'rationale-forge[ray]'"
            ) from exc
        if not ray.is_initialized():
            ray.init(
                address=None if self.address in (None, "", "local") else self.address,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours are shown instead
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # ... and Ray Data's note that its bars are off (they are, on purpose)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        self.cluster = {
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": int(resources.get("CPU", 0)),
            "gpus": int(resources.get("GPU", 0)),
        }
        return self.cluster

    def describe(self) -> dict[str, Any]:
        address = redact_argv([self.address])[0] if self.address else "local"
        return {"name": self.name, "address": address, **self.cluster}

    def _run(self, items: list[str], fn, bar: ProgressBar, advance, **map_args) -> None:
        """Run ``fn`` over the shard names ``items`` (one per task) and hand each result
        row to ``advance`` as it arrives."""
        import ray.data

        ds = ray.data.from_items([{"shard": s} for s in items], override_num_blocks=len(items))
        ds = ds.map_batches(fn, batch_size=1, batch_format="pyarrow", **map_args)
        try:
            for row in ds.iter_rows():
                bar.advance(advance(row))
        except Exception as exc:  # a worker's error arrives wrapped in Ray's
            raise RayEngineError(f"the Ray job failed: {worker_error(exc)}") from exc

    # -- generate ------------------------------------------------------------------------
    def generate(
        self, source: SourceOptions | str, out: str, config: GenerateConfig, progress: bool
    ) -> GenerateStats:
        import time

        import ray.data

        if not isinstance(source, str):
            raise ValueError(
                "--engine ray reads an ingested run: `forge ingest --source ... --out RUN`, "
                "then `forge generate --input RUN --engine ray ...`"
            )
        template = load_template(config.prompt)
        src = RunDir(source)
        names = [posixpath.basename(p) for p in src.shards()]
        if not names:
            raise FileNotFoundError(f"{source}: no ingested rows (data/part-*.parquet) found")
        identity = backend_identity(config)  # checks the API key; loads no model
        run_config = {"input": source, **config.output_config(template, identity)}
        run = prepare_run(out, "generate", run_config, config.overwrite)
        check_engine(run, "generate", "data", self.name)
        cluster = self.connect()
        markers = Markers(run, "generate")
        if config.retry_failed:
            for shard in shards_with_failures(run):
                markers.clear(shard)
        done = markers.done()
        todo = [n for n in names if n not in done]
        stats = GenerateStats(skipped=sum(done[n]["rows"] for n in names if n in done))
        total = sum(shard_rows(src, "data", n) for n in todo)
        local_model = config.backend in ("vllm", "transformers")
        gpus = cluster["gpus"] if local_model and config.device != "cpu" else 0
        if local_model:  # a model replica per GPU (one on the CPU without GPUs)
            actors = max(1, min(len(todo), gpus or 1))
        else:  # HTTP: the cluster's CPUs share --concurrency
            actors = max(1, min(len(todo), cluster["cpus"] or 1, config.concurrency))
        worker_config = replace(
            config,
            concurrency=math.ceil(config.concurrency / actors),
            rpm=config.rpm and math.ceil(config.rpm / actors),
            tpm=config.tpm and math.ceil(config.tpm / actors),
        )
        secrets = {name: os.environ[name] for name in (config.api_key_env,) if os.environ.get(name)}
        started = time.perf_counter()

        def finish() -> dict[str, Any]:
            stats.finish(time.perf_counter() - started, config)
            return {
                "counts": stats.as_dict(),
                "total_rows": run.count_rows(),
                "engine": {**self.describe(), "actors": actors},
            }

        def advance(row: dict[str, Any]) -> int:
            part = generate_stats_from_json(row["stats"])
            stats.merge(part)
            return part.rows + part.skipped

        label = f"generate on ray ({identity.name}: {identity.model})"
        with (
            recorded_stage(run, "generate", run_config, finish),
            ProgressBar(total, label, progress) as bar,
        ):
            run.update_stage("generate", {"engine": {**self.describe(), "actors": actors}})
            if todo:
                self._run(
                    todo,
                    GenerateWorker,
                    bar,
                    advance,
                    compute=ray.data.ActorPoolStrategy(size=actors),
                    fn_constructor_kwargs={
                        "source": source,
                        "out": out,
                        "config": worker_config,
                        "template": template,
                        "secrets": secrets,
                    },
                    num_cpus=0 if gpus else 1,
                    num_gpus=1 if gpus else 0,
                )
        return stats

    # -- filter --------------------------------------------------------------------------
    def start_filter(self, run: RunDir, config: FilterConfig) -> None:
        check_engine(run, "filter", SCORED, self.name)
        for path in (config.clip_model, config.clip_pretrained):
            looks_local = path and (path.endswith((".json", ".bin", ".pt")) or "/" in path)
            if config.clip and looks_local and not path.startswith("local-dir:"):
                if not os.path.exists(path):
                    raise FileNotFoundError(f"{path}: no such CLIP file")
        self.connect()

    def _clip_pool(self, config: FilterConfig, shards: int) -> tuple[int, int]:
        """(actors, GPUs per actor) for the scoring pool."""
        gpus = self.cluster.get("gpus", 0) if config.clip and config.device != "cpu" else 0
        default = gpus or self.cluster.get("cpus", 1) or 1
        return max(1, min(shards, self.clip_actors or default)), 1 if gpus else 0

    def score(self, source: RunDir, out: RunDir, config: FilterConfig, progress: bool) -> int:
        import ray.data

        markers = Markers(out, "filter")
        done = markers.done()
        todo = [n for n in (posixpath.basename(p) for p in source.shards()) if n not in done]
        total = sum(shard_rows(source, "data", n) for n in todo)
        actors, gpus = self._clip_pool(config, len(todo))
        self.cluster["clip_actors"] = actors
        out.update_stage("filter", {"engine": self.describe()})
        scored = 0

        def advance(row: dict[str, Any]) -> int:
            nonlocal scored
            scored += row["rows"]
            return row["rows"]

        with ProgressBar(total, f"filter on ray: scoring ({actors} actors)", progress) as bar:
            if todo:
                self._run(
                    todo,
                    ScoreWorker,
                    bar,
                    advance,
                    compute=ray.data.ActorPoolStrategy(size=actors),
                    fn_constructor_kwargs={
                        "source": source.url,
                        "out": out.url,
                        "config": config,
                    },
                    num_cpus=0 if gpus else 1,
                    num_gpus=gpus,
                )
        return scored

    def decide(self, out: RunDir, config: FilterConfig, stats: FilterStats, progress: bool) -> None:
        import ray

        decided = decisions(out, config, stats)  # run-wide: on the driver, as locally
        names = [posixpath.basename(p) for p in out.shards(SCORED)]
        total = out.count_rows(SCORED)

        def advance(row: dict[str, Any]) -> int:
            import json

            part = json.loads(row["stats"])
            stats.rows += part["rows"]
            stats.kept += part["kept"]
            stats.rejected += part["rejected"]
            stats.rejected_by_check.update(part["rejected_by_check"])
            return part["rows"]

        with ProgressBar(total, "filter on ray: deciding", progress) as bar:
            if names:
                self._run(
                    names,
                    decide_batch,
                    bar,
                    advance,
                    fn_kwargs={"out": out.url, "decided": ray.put(decided)},
                    num_cpus=1,
                )
