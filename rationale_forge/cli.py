"""The ``forge`` command line. Thin: parses flags, builds options, calls the stages."""

from __future__ import annotations

from typing import Annotated

import typer

from . import images
from .generate import GenerateConfig, GenerateStats, generate
from .ingest import IngestStats, RunConflictError, ingest
from .sources import SOURCES, SourceError, SourceOptions
from .ui import console, human_bytes, summary_table
from .vlm.errors import MissingAPIKeyError, ModelUnavailableError
from .vlm.local import DEFAULT_LOCAL_MODEL

app = typer.Typer(
    help="Generate, filter and publish 'think, then draw' rationale datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Source flags, shared by every command that reads a corpus.
SourceKind = Annotated[
    str, typer.Option("--source", "-s", help="corpus kind; `forge sources` lists them")
]
DataDir = Annotated[
    str | None,
    typer.Option(
        help="coco/folder: the corpus directory; parquet/jsonl/webdataset: a file, directory "
        "or glob"
    ),
]
Split = Annotated[str | None, typer.Option(help="split (coco: val2017; hf: train)")]
Dataset = Annotated[str | None, typer.Option(help="hf: Hub dataset name or local path")]
ImageColumn = Annotated[str | None, typer.Option(help="hf/parquet/jsonl: image column")]
CaptionColumn = Annotated[str | None, typer.Option(help="hf/parquet/jsonl: caption column")]
Streaming = Annotated[bool, typer.Option(help="hf: stream instead of downloading the split")]
Limit = Annotated[int | None, typer.Option(help="take at most N images")]
Seed = Annotated[
    int | None,
    typer.Option(
        help="with --limit: a seeded uniform sample instead of the first N (scans the source)"
    ),
]
NumShards = Annotated[int, typer.Option(help="split the input into N disjoint shards ...")]
ShardIndex = Annotated[int, typer.Option(help="... and read shard I (0-based)")]


def source_options(source: str | None, **flags) -> SourceOptions | None:
    return SourceOptions(kind=source, **flags) if source else None


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def print_ingest_summary(stats: IngestStats, out: str) -> None:
    rows = [("rows written", stats.rows), ("ok", stats.ok), ("errors", sum(stats.errors.values()))]
    rows += [(f"  error: {kind}", n) for kind, n in sorted(stats.errors.items())]
    if stats.skipped:
        rows.append(("already present (resumed)", stats.skipped))
    rows += [
        ("image bytes", human_bytes(stats.bytes)),
        ("seconds", stats.seconds),
        ("rows/s", stats.rows / stats.seconds if stats.seconds else 0.0),
    ]
    console.print(summary_table(f"ingest -> {out}", rows))


@app.command("sources")
def sources_cmd() -> None:
    """List the corpus kinds `--source` accepts and the flags each one reads."""
    from rich.table import Table

    table = Table(title="sources", show_lines=True)
    table.add_column("--source", style="bold")
    table.add_column("what it reads")
    table.add_column("flags")
    for kind, cls in SOURCES.items():
        flags = (
            "\n".join(f"{f.cli}{' (required)' if f.required else ''}: {f.help}" for f in cls.flags)
            or "(none)"
        )
        table.add_row(kind, cls.description, flags)
    table.caption = "every source also takes --limit, --seed, --num-shards, --shard-index"
    console.print(table)


@app.command("ingest")
def ingest_cmd(
    source: SourceKind,
    out: Annotated[str, typer.Option(help="run directory to write (local path or fsspec URL)")],
    data_dir: DataDir = None,
    split: Split = None,
    dataset: Dataset = None,
    image_column: ImageColumn = None,
    caption_column: CaptionColumn = None,
    streaming: Streaming = False,
    limit: Limit = None,
    seed: Seed = None,
    num_shards: NumShards = 1,
    shard_index: ShardIndex = 0,
    workers: Annotated[int | None, typer.Option(help="threads reading and decoding images")] = None,
    rows_per_shard: Annotated[int, typer.Option(help="rows per Parquet shard")] = 1000,
    max_pixels: Annotated[
        int, typer.Option(help="refuse images with more pixels (bomb guard)")
    ] = images.DEFAULT_MAX_PIXELS,
    overwrite: Annotated[bool, typer.Option(help="delete OUT first instead of resuming")] = False,
) -> None:
    """Read a corpus into a run directory of checked, identified rows (no model is called).

    Bad files become rows with status=error and a named cause; rerunning the same command
    resumes where an interrupted run stopped.
    """
    options = SourceOptions(
        kind=source,
        data_dir=data_dir,
        split=split,
        dataset=dataset,
        image_column=image_column,
        caption_column=caption_column,
        streaming=streaming,
        limit=limit,
        seed=seed,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    try:
        stats = ingest(
            options,
            out,
            workers=workers,
            overwrite=overwrite,
            rows_per_shard=rows_per_shard,
            max_pixels=max_pixels,
        )
    except (SourceError, RunConflictError) as exc:
        _fail(str(exc))
    print_ingest_summary(stats, out)


def print_generate_summary(stats: GenerateStats, out: str) -> None:
    rows = [("rows written", stats.rows), ("ok", stats.ok), ("errors", sum(stats.errors.values()))]
    rows += [(f"  error: {kind}", n) for kind, n in sorted(stats.errors.items())]
    if stats.skipped:
        rows.append(("already present (resumed)", stats.skipped))
    rows += [
        ("requests sent", stats.requests),
        ("answers from cache", stats.cache_hits),
        ("repaired JSON", stats.repaired),
        ("prompt tokens", stats.prompt_tokens),
        ("completion tokens", stats.completion_tokens),
        ("seconds", stats.seconds),
        ("requests/s", stats.requests / stats.seconds if stats.seconds else 0.0),
        (
            "tokens/s",
            (stats.prompt_tokens + stats.completion_tokens) / stats.seconds
            if stats.seconds
            else 0.0,
        ),
    ]
    if stats.cost is not None:
        rows.append(("estimated cost ($)", stats.cost))
    console.print(summary_table(f"generate -> {out}", rows))


def _prices(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        price_in, price_out = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter("expected IN,OUT in $ per million tokens, e.g. 2.5,10") from None
    return price_in, price_out


@app.command("generate")
def generate_cmd(
    out: Annotated[str, typer.Option(help="run directory to write (local path or fsspec URL)")],
    source: Annotated[
        str | None,
        typer.Option(
            "--source", "-s", help="corpus kind to read (`forge sources`); or use --input"
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(help="an ingested run directory (from `forge ingest`) instead of --source"),
    ] = None,
    data_dir: DataDir = None,
    split: Split = None,
    dataset: Dataset = None,
    image_column: ImageColumn = None,
    caption_column: CaptionColumn = None,
    streaming: Streaming = False,
    limit: Limit = None,
    seed: Seed = None,
    num_shards: NumShards = 1,
    shard_index: ShardIndex = 0,
    backend: Annotated[
        str | None,
        typer.Option(
            help="openai (any OpenAI-compatible server), transformers (local model) or vllm "
            "(in-process); default: openai when --base-url is given, else transformers"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"model name or path (transformers default: {DEFAULT_LOCAL_MODEL})"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="environment variable holding the API key")
    ] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(help="requests in flight at once")] = 16,
    prompt: Annotated[
        str | None,
        typer.Option(help="prompt template file (Jinja2); default prompts/rationale.j2"),
    ] = None,
    max_image_side: Annotated[
        int, typer.Option(help="resize images so no side exceeds this")
    ] = 768,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 0.7,
    top_p: Annotated[float, typer.Option(help="nucleus sampling")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="cap on answer tokens")] = 1500,
    timeout: Annotated[float, typer.Option(help="seconds per request attempt")] = 120.0,
    max_retries: Annotated[int, typer.Option(help="retries of 429/5xx/timeouts")] = 6,
    rpm: Annotated[int | None, typer.Option(help="client-side requests/minute limit")] = None,
    tpm: Annotated[int | None, typer.Option(help="client-side tokens/minute limit")] = None,
    structured: Annotated[
        str,
        typer.Option(
            help="auto|on|off: ask for JSON-Schema output (auto falls back when unsupported)"
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option(help="local backends: images per batch")] = 4,
    device: Annotated[str | None, typer.Option(help="local backends: cpu, cuda, ...")] = None,
    price_per_mtok: Annotated[
        str | None,
        typer.Option(help="IN,OUT prices in $ per million tokens, for a cost estimate"),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option(help="send failed requests (errors, refusals, cut-off answers) again")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="delete OUT first instead of resuming")] = False,
    workers: Annotated[int | None, typer.Option(help="threads preparing images")] = None,
) -> None:
    """Have a VLM write a rationale and prompt variants for every image.

    Every answer is cached as it arrives: rerunning the same command after a crash sends
    no finished request again and loses nothing.
    """
    if bool(source) == bool(input):
        _fail("pass exactly one of --source KIND or --input RUN_DIR")
    options = source_options(
        source,
        data_dir=data_dir,
        split=split,
        dataset=dataset,
        image_column=image_column,
        caption_column=caption_column,
        streaming=streaming,
        limit=limit,
        seed=seed,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    if structured not in ("auto", "on", "off"):
        _fail("--structured must be auto, on or off")
    config = GenerateConfig(
        backend=backend or ("openai" if base_url else "transformers"),
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        prompt=prompt,
        max_image_side=max_image_side,
        concurrency=concurrency,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        timeout=timeout,
        max_retries=max_retries,
        rpm=rpm,
        tpm=tpm,
        structured=structured,
        batch_size=batch_size,
        device=device,
        retry_failed=retry_failed,
        overwrite=overwrite,
        workers=workers,
        price_per_mtok=_prices(price_per_mtok),
    )
    try:
        stats = generate(options or input, out, config)
    except (
        SourceError,
        RunConflictError,
        MissingAPIKeyError,
        FileNotFoundError,
        ValueError,
        ModelUnavailableError,
    ) as exc:
        _fail(str(exc))
    print_generate_summary(stats, out)


@app.command("demo")
def demo_cmd(
    out: Annotated[str, typer.Option(help="where to write the demo runs")] = "runs/demo",
    model: Annotated[
        str | None, typer.Option(help=f"local model for generation (default {DEFAULT_LOCAL_MODEL})")
    ] = None,
) -> None:
    """Run the pipeline on the built-in sample corpus (no server, no API key).

    Uses the local default model; offline without its weights, a tiny random model stands
    in (with a warning) so the whole pipeline still runs.
    """
    from .demo import run_demo

    result = run_demo(out, model)
    print_ingest_summary(result.ingest, result.ingested)
    print_generate_summary(result.generate, result.generated)
    console.print(
        f"[bold green]rationales written to[/] {result.generated}/data "
        f"(model: {result.model}{', tiny random fallback' if result.fallback else ''})"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
