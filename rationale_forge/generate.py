"""The generate stage: ingested rows -> VLM requests -> parsed rationales.

*What to ask* (the prompt template, the image) is separate from *how it is sent* (the
backend). Every answer goes into the request cache the moment it arrives, so a crash,
Ctrl-C or ``kill -9`` loses no answer and a rerun sends no finished request again. Failed
requests, refusals, cut-off and unparseable answers become rows with ``status="error"``;
``retry_failed`` sends them again.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from . import images
from .cache import RequestCache, cache_path
from .ingest import default_workers, materialize, prepare_run
from .parallel import ordered_map
from .prompting import PromptTemplate, load_template, render_row
from .rationale import FIELDS, ParseError, parse
from .schema import GENERATE_SCHEMA, STATUS_ERROR, STATUS_OK, empty_row
from .sources import SourceOptions, open_source
from .store import RunDir, ShardWriter, recorded_stage
from .ui import ProgressBar
from .vlm.base import ERROR_KINDS, Backend, VLMRequest, VLMResult, request_key

if TYPE_CHECKING:
    from .engines import Engine

#: Prepared rows fetched from the worker threads per hop.
PREPARED_CHUNK = 32

REFUSAL_OPENERS = (
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "i can not",
    "i'm unable",
    "i am unable",
    "sorry, i",
)


@dataclass
class GenerateConfig:
    """How to generate; the CLI and ``forge run`` build one of these."""

    backend: str = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str | None = None  # template file; None = the packaged default
    n_variants: int = 3
    max_image_side: int = 768
    concurrency: int = 16
    temperature: float = 0.7
    top_p: float = 1.0
    sampling_seed: int | None = None
    extra_body: dict[str, Any] | None = None  # openai backend: extra request fields
    max_tokens: int = 1500
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0  # seconds before the first retry (doubles each time)
    rpm: int | None = None
    tpm: int | None = None
    structured: str = "auto"
    batch_size: int = 4  # local backends
    device: str | None = None  # local backends
    retry_failed: bool = False
    overwrite: bool = False
    workers: int | None = None
    rows_per_shard: int = 1000
    price_per_mtok: tuple[float, float] | None = None  # (input, output) in $ per 1M tokens

    def base_urls(self) -> list[str]:
        """The endpoints in ``base_url`` (a comma-separated list spreads the load)."""
        return [u.strip() for u in (self.base_url or "").split(",") if u.strip()]

    def output_config(self, template: PromptTemplate, backend: Backend) -> dict[str, Any]:
        """The part of the configuration that shapes the output (resume must match it)."""
        return {
            "backend": backend.name,
            "model": backend.model,
            "params": backend.params(),
            "prompt_template": template.name,
            "prompt_hash": template.hash,
            "n_variants": self.n_variants,
            "max_image_side": self.max_image_side,
        }


@dataclass
class GenerateStats:
    rows: int = 0
    ok: int = 0
    skipped: int = 0  # already in the output from an earlier run
    retried_failed: int = 0  # failed rows removed for --retry-failed
    requests: int = 0  # sent to the backend in this run
    cache_hits: int = 0
    repaired: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    cost: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = sum(self.errors.values())
        d["errors_by_kind"] = dict(self.errors)
        d["requests_per_second"] = round(self.requests / self.seconds, 2) if self.seconds else 0
        tokens = self.prompt_tokens + self.completion_tokens
        d["tokens_per_second"] = round(tokens / self.seconds, 1) if self.seconds else 0
        d["seconds"] = round(self.seconds, 3)
        return d

    def merge(self, other: GenerateStats) -> None:
        """Add the counts of ``other`` (a part of the same run, e.g. one shard)."""
        for name in (
            "rows",
            "ok",
            "skipped",
            "retried_failed",
            "requests",
            "cache_hits",
            "repaired",
            "prompt_tokens",
            "completion_tokens",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)

    def finish(self, seconds: float, config: GenerateConfig) -> None:
        """Set the wall time and, with prices, the estimated cost."""
        self.seconds = seconds
        if config.price_per_mtok:
            price_in, price_out = config.price_per_mtok
            self.cost = (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6


def make_backend(config: GenerateConfig) -> Backend:
    """The backend named by ``config.backend``."""
    if config.backend == "openai":
        from .vlm.openai_backend import OpenAIBackend, OpenAIConfig

        if not config.model:
            raise ValueError("--backend openai needs --model (the name the server serves)")
        urls = config.base_urls()
        if len(urls) > 1:
            from .engines.endpoints import BalancedBackend

            return BalancedBackend([make_backend(replace(config, base_url=url)) for url in urls])
        return OpenAIBackend(
            OpenAIConfig(
                model=config.model,
                base_url=urls[0] if urls else None,
                api_key_env=config.api_key_env,
                concurrency=config.concurrency,
                timeout=config.timeout,
                max_retries=config.max_retries,
                backoff_base=config.backoff_base,
                rpm=config.rpm,
                tpm=config.tpm,
                temperature=config.temperature,
                top_p=config.top_p,
                sampling_seed=config.sampling_seed,
                extra_body=config.extra_body,
                max_tokens=config.max_tokens,
                structured=config.structured,
            )
        )
    if config.backend == "transformers":
        from .vlm.transformers_backend import TransformersBackend

        return TransformersBackend.from_config(config)
    if config.backend == "vllm":
        from .vlm.vllm_backend import VLLMBackend

        return VLLMBackend.from_config(config)
    raise ValueError(f"unknown backend '{config.backend}'; choose openai, transformers or vllm")


@dataclass
class BackendIdentity:
    """What names a backend's answers (for the run's configuration and the request keys)
    without loading a model: a driver that hands the model to GPU workers uses this."""

    name: str
    model: str
    _params: dict[str, Any]

    def params(self) -> dict[str, Any]:
        return self._params


def backend_identity(config: GenerateConfig) -> Backend | BackendIdentity:
    """The backend for ``config`` where making one is cheap (openai: it also checks the
    API key); for local models, their identity only. Must agree with the backends'
    ``params()``."""
    if config.backend == "openai":
        return make_backend(config)
    sampling = {"temperature": config.temperature, "top_p": config.top_p}
    if config.backend == "transformers":
        from .vlm.local import DEFAULT_LOCAL_MODEL

        return BackendIdentity(
            "transformers",
            config.model or DEFAULT_LOCAL_MODEL,
            {**sampling, "max_tokens": config.max_tokens, "constrained": "skeleton-v1"},
        )
    if config.backend == "vllm":
        if not config.model:
            raise ValueError("--backend vllm needs --model (a Hub id or a local path)")
        return BackendIdentity(
            "vllm",
            config.model,
            {**sampling, "max_tokens": config.max_tokens, "structured": "json_schema"},
        )
    return make_backend(config)  # raises for an unknown name


# -- rows --------------------------------------------------------------------------------
def input_rows(
    source: SourceOptions | str, workers: int
) -> tuple[Iterator[dict], int | None, dict]:
    """Rows to generate for, their expected count, and a description for the manifest.
    ``source`` is either source options (ingested on the fly) or an ingested run directory."""
    if isinstance(source, SourceOptions):
        src = open_source(source)
        rows = (
            row
            for row, _ in ordered_map(lambda it: materialize(it, src.kind), src.selected(), workers)
        )
        return rows, src.expected(), {"source": src.describe()}
    run = RunDir(source)
    if not run.shards():
        raise FileNotFoundError(f"{source}: no ingested rows (data/part-*.parquet) found")
    return run.iter_rows(), run.count_rows(), {"input": source}


def encode_for_request(data: bytes, max_side: int) -> bytes:
    """Upright RGB, longest side at most ``max_side``, as JPEG: done once per image."""
    img = images.open_rgb(data, max_side=max_side)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def looks_like_refusal(text: str | None) -> bool:
    return bool(text) and text.strip().lower().startswith(REFUSAL_OPENERS)


def finish_row(
    row: dict[str, Any], result: VLMResult, backend: Backend, template: PromptTemplate
) -> dict[str, Any]:
    """The output row for an input row and its answer (parsed, or an error)."""
    out = empty_row(GENERATE_SCHEMA, **row)
    out.update(
        backend=backend.name,
        model=backend.model,
        prompt_hash=template.hash,
        request_key=result.key,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        attempts=result.attempts,
        latency_s=result.seconds,
    )
    where = row.get("key")
    if not result.ok:
        out.update(
            status=STATUS_ERROR,
            error_kind=result.error_kind,
            error=f"{where}: {result.error}",
            raw_answer=result.text,
        )
        return out
    try:
        obj, repaired = parse(result.text or "")
    except ParseError as exc:
        kind = "refusal" if looks_like_refusal(result.text) else "unparseable"
        out.update(
            status=STATUS_ERROR, error_kind=kind, error=f"{where}: {exc}", raw_answer=result.text
        )
        return out
    out.update(obj.model_dump(include=set(FIELDS)))
    out.update(status=STATUS_OK, error_kind=None, error=None, repaired=repaired)
    return out


# -- the stage ---------------------------------------------------------------------------
class Answerer:
    """The stage's core, run by every engine: feeds prepared requests for a stream of rows
    to the backend with bounded concurrency and hands each finished row to ``writer`` as
    its answer arrives (in completion order). The local engine streams a whole run through
    one; the Ray engine runs one per worker over a shard at a time."""

    def __init__(
        self,
        backend: Backend,
        cache: RequestCache,
        writer: ShardWriter,
        template: PromptTemplate,
        config: GenerateConfig,
        stats: GenerateStats,
        bar: ProgressBar,
    ):
        self.backend, self.cache, self.writer = backend, cache, writer
        self.template, self.config, self.stats, self.bar = template, config, stats, bar

    def prepare(self, row: dict[str, Any]) -> tuple[dict[str, Any], VLMRequest | None]:
        """Runs in worker threads: render the prompt, resize and encode the image once."""
        if row.get("status") != STATUS_OK:
            return row, None
        prompt = render_row(self.template, row, self.config.n_variants)
        key = request_key(self.backend, prompt, row["image_id"])
        try:
            image = encode_for_request(row["image"]["bytes"], self.config.max_image_side)
        except images.ImageError as exc:
            row = {
                **row,
                "status": STATUS_ERROR,
                "error_kind": exc.kind,
                "error": f"{row.get('key')}: {exc}",
            }
            return row, None
        return row, VLMRequest(key=key, prompt=prompt, image=image)

    def emit(self, out: dict[str, Any]) -> None:
        image = out.get("image") or {}
        self.writer.write(out, len(image.get("bytes") or b""))
        s = self.stats
        s.rows += 1
        if out["status"] == STATUS_OK:
            s.ok += 1
            s.repaired += bool(out.get("repaired"))
        else:
            s.errors[out["error_kind"]] += 1
        s.prompt_tokens += out.get("prompt_tokens") or 0
        s.completion_tokens += out.get("completion_tokens") or 0
        self.bar.advance()

    async def _ask(
        self, row: dict[str, Any], request: VLMRequest, slots: asyncio.Semaphore
    ) -> None:
        try:
            result = await self.backend.complete(request)
            self.cache.put(result)  # durable before anything else happens to it
            self.stats.requests += 1
            self.emit(finish_row(row, result, self.backend, self.template))
        finally:
            slots.release()

    async def run(self, rows: Iterator[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        workers = self.config.workers or default_workers()
        prepared = ordered_map(self.prepare, rows, workers)
        slots = asyncio.Semaphore(
            getattr(self.backend, "max_in_flight", None) or self.config.concurrency
        )
        tasks: set[asyncio.Task] = set()
        failed: list[BaseException] = []

        def settle(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())

        def take() -> list:  # a chunk per thread hop: one hop per row would pace the loop
            return list(itertools.islice(prepared, PREPARED_CHUNK))

        try:
            while chunk := await loop.run_in_executor(None, take):
                for row, request in chunk:
                    if request is None:  # an input error or an undecodable image
                        self.emit(empty_row(GENERATE_SCHEMA, **row))
                        continue
                    cached = self.cache.get(request.key)
                    if cached is not None:
                        out = finish_row(row, cached, self.backend, self.template)
                        if out["status"] == STATUS_OK or not self.config.retry_failed:
                            self.stats.cache_hits += 1
                            self.emit(out)
                            continue
                    await slots.acquire()
                    if failed:
                        raise failed[0]
                    task = asyncio.create_task(self._ask(row, request, slots))
                    tasks.add(task)
                    task.add_done_callback(settle)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            try:
                prepared.close()
            except ValueError:  # still running in a worker thread; it ends with the pool
                pass


def drop_failed(run: RunDir) -> int:
    """Remove rows whose generation failed from ``run`` (so they are made again);
    returns how many were removed. Input errors (unreadable files) stay."""
    kinds = pa.array(list(ERROR_KINDS), pa.string())
    return run.drop_rows(lambda table: pc.is_in(table.column("error_kind"), value_set=kinds))


def generate(
    source: SourceOptions | str,
    out: str,
    config: GenerateConfig,
    progress: bool = True,
    engine: Engine | None = None,
) -> GenerateStats:
    """Run the generate stage from ``source`` (source options, or an ingested run
    directory) into ``out``; returns the counts. ``engine`` feeds the rows to the stage's
    core (:class:`Answerer`): in this process (the default) or on a Ray cluster."""
    if engine is None:
        from .engines.local import LocalEngine

        engine = LocalEngine()
    return engine.generate(source, out, config, progress)


def generate_local(
    source: SourceOptions | str, out: str, config: GenerateConfig, progress: bool = True
) -> GenerateStats:
    """The local engine's generate: one process streams the rows through one
    :class:`Answerer` into numbered shards."""
    template = load_template(config.prompt)
    workers = config.workers or default_workers()
    rows, expected, input_desc = input_rows(source, workers)  # bad input fails fast
    backend = make_backend(config)
    run_config = {**input_desc, **config.output_config(template, backend)}
    run = prepare_run(out, "generate", run_config, config.overwrite)
    dropped = drop_failed(run) if config.retry_failed else 0
    done = {r["key"] for r in run.iter_rows(columns=["key"])}
    stats = GenerateStats(skipped=len(done), retried_failed=dropped)
    cache = RequestCache(cache_path(run))
    todo = (r for r in rows if r["key"] not in done)
    total = None if expected is None else max(expected - len(done), 0)
    started = time.perf_counter()

    def finish() -> dict[str, Any]:
        stats.finish(time.perf_counter() - started, config)
        cache.close()
        return {
            "counts": stats.as_dict(),
            "total_rows": run.count_rows(),
            "engine": {"name": "local"},
        }

    with (
        recorded_stage(run, "generate", run_config, finish),
        ShardWriter(run, GENERATE_SCHEMA, rows_per_shard=config.rows_per_shard) as writer,
        ProgressBar(total, f"generate ({backend.name}: {backend.model})", progress) as bar,
    ):
        run.update_stage("generate", {"engine": {"name": "local"}})  # resume checks it
        driver = Answerer(backend, cache, writer, template, config, stats, bar)

        async def main() -> None:
            try:
                await driver.run(todo)
            finally:
                await backend.aclose()

        asyncio.run(main())
    return stats
