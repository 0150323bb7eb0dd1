"""The ``forge`` command line. Thin: parses flags, builds options, calls the stages."""

from __future__ import annotations

from typing import Annotated

import typer

from . import images
from .ingest import IngestStats, RunConflictError, ingest
from .sources import SOURCES, SourceError, SourceOptions
from .ui import console, human_bytes, summary_table

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


@app.command("demo")
def demo_cmd(
    out: Annotated[str, typer.Option(help="where to write the demo run")] = "runs/demo",
) -> None:
    """Run the pipeline on the built-in sample corpus (no server, no API key)."""
    stats = ingest(SourceOptions(kind="sample"), out, overwrite=True)
    print_ingest_summary(stats, out)
    console.print(f"[bold green]demo run written to[/] {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
