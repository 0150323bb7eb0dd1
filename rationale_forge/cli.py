"""The ``forge`` command line. Thin: parses flags, builds options, calls the stages."""

from __future__ import annotations

from typing import Annotated

import typer

from . import images
from .engines import EngineError, make_engine
from .flags import json_object
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


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"rationale-forge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Generate, filter and publish 'think, then draw' rationale datasets."""


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
# Engine flags (generate, filter).
EngineName = Annotated[
    str,
    typer.Option(
        help="local: this process; ray: a Ray cluster (the package's ray extra), one input "
        "shard per task, models in actor pools; the output is the same either way"
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="with --engine ray: auto (the running cluster), HOST:6379 or ray://HOST:10001; "
        "default: start Ray on this machine"
    ),
]


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


def _json_object(text: str | None, flag: str) -> dict | None:
    try:
        return json_object(text, flag)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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
        typer.Option(
            help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1; several, "
            "comma-separated, share the load (each request goes to the least busy)"
        ),
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
    extra_body: Annotated[
        str | None,
        typer.Option(
            help="JSON merged into every request, e.g. '{\"top_k\": 20}' (openai backend)"
        ),
    ] = None,
    sampling_seed: Annotated[
        int | None,
        typer.Option(
            help="sampling seed sent to the server (reproducible answers where supported)"
        ),
    ] = None,
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
    engine: EngineName = "local",
    ray_address: RayAddress = None,
) -> None:
    """Have a VLM write a rationale and prompt variants for every image.

    Every answer is cached as it arrives: rerunning the same command after a crash sends
    no finished request again and loses nothing.
    """
    if bool(source) == bool(input):
        _fail("pass exactly one of --source KIND or --input RUN_DIR")
    if input:
        given = {
            "--data-dir": data_dir,
            "--split": split,
            "--dataset": dataset,
            "--limit": limit,
            "--seed": seed,
            "--num-shards": num_shards != 1 or None,
            "--shard-index": shard_index != 0 or None,
        }
        ignored = [flag for flag, value in given.items() if value is not None]
        if ignored:
            _fail(
                f"{', '.join(ignored)} select(s) rows of a --source; with --input the whole "
                "ingested run is used. Pass them to `forge ingest` (or use --source here)."
            )
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
        sampling_seed=sampling_seed,
        extra_body=_json_object(extra_body, "--extra-body"),
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
        stats = generate(options or input, out, config, engine=make_engine(engine, ray_address))
    except (
        SourceError,
        RunConflictError,
        MissingAPIKeyError,
        FileNotFoundError,
        ValueError,
        ModelUnavailableError,
        EngineError,
    ) as exc:
        _fail(str(exc))
    print_generate_summary(stats, out)
    if stats.requests and not stats.ok and stats.errors.get("request_failed") == stats.rows:
        console.print(
            "[bold red]every request failed[/] (see the error column of the rows): "
            "is the server running and --base-url right? Rerun the same command "
            "with --retry-failed once it is."
        )
        raise typer.Exit(code=1)


def _parse_sets(values: list[str]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {}
    for item in values:
        name, eq, value = item.partition("=")
        rule, dot, param = name.partition(".")
        if not (eq and dot and rule and param):
            raise typer.BadParameter(f"--set expects RULE.PARAM=VALUE, got '{item}'")
        params.setdefault(rule, {})[param] = value
    return params


def print_filter_summary(stats, out: str, report: str | None) -> None:
    rows = [
        ("rows", stats.rows),
        ("kept", stats.kept),
        ("rejected", stats.rejected),
        ("kept ratio", f"{stats.kept / stats.rows:.1%}" if stats.rows else "-"),
    ]
    rows += [
        (f"  rejected by {name}", n)
        for name, n in sorted(stats.rejected_by_check.items(), key=lambda kv: -kv[1])
    ]
    rows += [(f"threshold {name}", value) for name, value in stats.thresholds.items()]
    rows += [("scored in this run", stats.scored), ("seconds", stats.seconds)]
    console.print(summary_table(f"filter -> {out}", rows))
    if report:
        console.print(f"[bold green]report:[/] {report}")


@app.command("filter")
def filter_cmd(
    run_dir: Annotated[str, typer.Argument(help="a generated run (from `forge generate`)")],
    out: Annotated[str, typer.Option(help="filtered run directory to write")],
    preset: Annotated[
        str, typer.Option(help="lenient, default or strict (`forge rules`)")
    ] = "default",
    enable: Annotated[list[str] | None, typer.Option(help="switch a check on (repeatable)")] = None,
    disable: Annotated[
        list[str] | None, typer.Option(help="switch a check off (repeatable)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="tune a check: RULE.PARAM=VALUE, e.g. length.min_words=40"),
    ] = None,
    clip: Annotated[bool, typer.Option(help="score image-text alignment with CLIP")] = True,
    clip_model: Annotated[
        str, typer.Option(help="open_clip model name, or a model-config .json")
    ] = "ViT-B-32",
    clip_pretrained: Annotated[
        str, typer.Option(help="pretrained tag, a weights file, or local-dir:PATH")
    ] = "laion2b_s34b_b79k",
    clip_batch_size: Annotated[int, typer.Option(help="images per CLIP batch")] = 32,
    clip_keep_top: Annotated[
        float | None,
        typer.Option(help="keep this fraction of rows, ranked by image-rationale CLIP score"),
    ] = None,
    min_clip_caption: Annotated[
        float | None, typer.Option(help="minimum image-caption cosine")
    ] = None,
    min_clip_rationale: Annotated[
        float | None, typer.Option(help="minimum image-rationale cosine (mean over chunks)")
    ] = None,
    dedup_images: Annotated[bool, typer.Option(help="reject near-duplicate images")] = True,
    phash_distance: Annotated[
        int, typer.Option(help="perceptual-hash bits within which images are duplicates")
    ] = 4,
    dedup_rationales: Annotated[bool, typer.Option(help="reject near-duplicate rationales")] = True,
    rationale_similarity: Annotated[
        float, typer.Option(help="MinHash Jaccard at which rationales are duplicates")
    ] = 0.8,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: auto)")] = None,
    workers: Annotated[int | None, typer.Option(help="threads decoding images")] = None,
    report: Annotated[bool, typer.Option(help="write the HTML report")] = True,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    clip_actors: Annotated[
        int | None,
        typer.Option(
            help="with --engine ray: CLIP model replicas (default: one per GPU, else one per CPU)"
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="delete OUT first instead of resuming")] = False,
) -> None:
    """Score generated rationales (CLIP, rule checks, dedup); keep or reject each row.

    Kept rows go to OUT/data, rejected ones to OUT/rejected with every failed check and its
    score in reject_reasons; nothing is dropped silently. Rerunning resumes the scoring.
    """
    from .filter import FilterConfig, filter_run
    from .filters.clip import ClipUnavailableError

    config = FilterConfig(
        preset=preset,
        enable=enable or [],
        disable=disable or [],
        params=_parse_sets(set_ or []),
        clip=clip,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        clip_batch_size=clip_batch_size,
        clip_keep_top=clip_keep_top,
        min_clip_caption=min_clip_caption,
        min_clip_rationale=min_clip_rationale,
        dedup_images=dedup_images,
        phash_distance=phash_distance,
        dedup_rationales=dedup_rationales,
        rationale_similarity=rationale_similarity,
        device=device,
        workers=workers,
        overwrite=overwrite,
    )
    try:
        stats = filter_run(
            run_dir, out, config, engine=make_engine(engine, ray_address, clip_actors)
        )
    except (
        RunConflictError,
        FileNotFoundError,
        ValueError,
        ClipUnavailableError,
        RuntimeError,
    ) as exc:
        _fail(str(exc))
    report_path = None
    if report:
        from .report import write_report

        report_path = str(write_report(out))
    print_filter_summary(stats, out, report_path)


@app.command("rules")
def rules_cmd() -> None:
    """List the filter's checks, their parameters and defaults, and the presets."""
    import dataclasses

    from rich.table import Table

    from .filters.rules import PRESETS, RULES

    table = Table(title="checks (tune with --set RULE.PARAM=VALUE)", show_lines=True)
    table.add_column("check", style="bold")
    table.add_column("what it checks")
    table.add_column("parameters (default)")
    table.add_column("presets")
    for name, cls in RULES.items():
        fields = [f for f in dataclasses.fields(cls) if f.init]
        params = "\n".join(f"{f.name} = {_default(f)}" for f in fields)
        presets = ", ".join(p for p, spec in PRESETS.items() if name in spec["enabled"])
        table.add_row(name, cls.description, params or "-", presets or "off")
    console.print(table)
    console.print(
        "CLIP scores (clip_caption, clip_rationale_mean/min) and dedup "
        "(duplicate_image, duplicate_rationale) are set with their own flags: "
        "`forge filter --help`."
    )


def _default(field) -> str:
    import dataclasses

    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "-"


@app.command("report")
def report_cmd(
    filtered_dir: Annotated[str, typer.Argument(help="a filtered run (from `forge filter`)")],
    out: Annotated[str | None, typer.Option(help="where to write (default DIR/report)")] = None,
    max_examples: Annotated[int, typer.Option(help="examples of kept and of rejected rows")] = 48,
) -> None:
    """Write the HTML report of a filtered run: counts per check, histograms, a gallery."""
    from .report import write_report

    try:
        path = write_report(filtered_dir, out, max_examples=max_examples)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"[bold green]report:[/] {path}")


def print_export_summary(stats, out: str) -> None:
    rows = [(f"{split} rows", n) for split, n in stats.rows.items()]
    rows += [(f"{split} shards", len(files)) for split, files in stats.shards.items()]
    rows += [
        ("image groups", stats.groups),
        ("rows sharing a group", stats.grouped_rows),
        ("format", stats.format),
        ("data size", human_bytes(stats.bytes)),
        ("seconds", stats.seconds),
    ]
    console.print(summary_table(f"export -> {out}", rows))
    console.print(f"[bold green]dataset:[/] {out}  [bold green]card:[/] {stats.card}")


@app.command("export")
def export_cmd(
    filtered_dir: Annotated[str, typer.Argument(help="a filtered run (from `forge filter`)")],
    out: Annotated[str, typer.Option(help="dataset folder to write (local path)")],
    test_size: Annotated[
        float, typer.Option(help="share of image groups in the test split (0: train only)")
    ] = 0.05,
    format: Annotated[
        str,
        typer.Option(
            help="forge (every column, the trainer's layout) or reasongen (the public "
            "ReasonGen-R1 SFT layout: brief/detailed caption, augmented_prompts/cots structs)"
        ),
    ] = "forge",
    seed: Annotated[int, typer.Option(help="seed of the split hash")] = 0,
    max_shard_mb: Annotated[
        int, typer.Option(help="largest Parquet shard in MB (the Hub suggests <= 500)")
    ] = 500,
    rows_per_shard: Annotated[int | None, typer.Option(help="also cap the rows per shard")] = None,
    phash_distance: Annotated[
        int | None,
        typer.Option(
            help="images within this many perceptual-hash bits stay in one split "
            "(default: the filter's --phash-distance)"
        ),
    ] = None,
    license: Annotated[
        str | None,
        typer.Option(help="license id for the card (default: the source corpus's, else 'other')"),
    ] = None,
    pretty_name: Annotated[str | None, typer.Option(help="dataset title for the card")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="replace OUT even if it holds something else")
    ] = False,
) -> None:
    """Export the kept rows as a Hub-ready dataset: train/test split by image (near-
    duplicates kept together), Parquet shards, and a dataset card (README.md).

    `datasets.load_dataset(OUT)` loads it; `forge push-to-hub OUT` publishes it.
    """
    from .export import ExportConfig, ExportError, export

    config = ExportConfig(
        test_size=test_size,
        format=format,
        seed=seed,
        max_shard_bytes=max_shard_mb << 20,
        rows_per_shard=rows_per_shard,
        phash_distance=phash_distance,
        license=license,
        pretty_name=pretty_name,
        overwrite=overwrite,
    )
    try:
        stats = export(filtered_dir, out, config)
    except ExportError as exc:
        _fail(str(exc))
    print_export_summary(stats, out)


@app.command("push-to-hub")
def push_cmd(
    dataset_dir: Annotated[str, typer.Argument(help="an exported dataset (from `forge export`)")],
    repo_id: Annotated[str, typer.Option(help="Hub dataset repository, ORG/NAME")],
    private: Annotated[bool, typer.Option(help="create the repository as private")] = False,
    revision: Annotated[
        str | None, typer.Option(help="branch to push to (created when missing; default main)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="list what would be sent (files, sizes, commits); send nothing")
    ] = False,
    files_per_commit: Annotated[
        int, typer.Option(help="files per commit (the Hub limits commits per hour)")
    ] = 100,
    endpoint: Annotated[
        str | None, typer.Option(help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    ] = None,
) -> None:
    """Publish an exported dataset folder as a Hub dataset repository.

    Files already on the Hub are not sent again, so rerunning after an interruption
    resumes; 429/5xx answers are retried with backoff. The token comes from HF_TOKEN or
    the stored Hub login (`hf auth login`) and is never printed.
    """
    from .hub import HubError, PushConfig, hub_endpoint, push_to_hub

    config = PushConfig(
        repo_id=repo_id,
        private=private,
        revision=revision,
        endpoint=endpoint,
        files_per_commit=files_per_commit,
        dry_run=dry_run,
    )
    try:
        result = push_to_hub(dataset_dir, config)
    except HubError as exc:
        _fail(str(exc))
    if dry_run:
        print_push_plan(result, f"{dataset_dir} -> {repo_id} ({hub_endpoint(endpoint)})")
        return
    rows = [
        ("files sent", len(result.plan.send)),
        ("already on the Hub", len(result.plan.unchanged)),
        ("stale files deleted", len(result.plan.stale)),
        ("bytes sent", human_bytes(result.plan.bytes_to_send)),
        ("commits", len(result.commits)),
        ("retries", result.retries),
    ]
    console.print(summary_table(f"push-to-hub -> {repo_id}", rows))
    console.print(f"[bold green]dataset:[/] {result.url}")


def print_push_plan(plan, title: str) -> None:
    from rich.table import Table

    table = Table(title=f"dry run: {title}")
    table.add_column("commit", justify="right")
    table.add_column("file")
    table.add_column("size", justify="right")
    for i, group in enumerate(plan.commits, 1):
        for f in group:
            table.add_row(str(i), f.path, human_bytes(f.size))
    console.print(table)
    remote = (
        f"{len(plan.unchanged)} already on the Hub"
        if plan.remote_checked
        else f"remote not checked ({plan.remote_note})"
    )
    for path in plan.stale:
        console.print(f"would delete {path} (not in the local folder)")
    console.print(
        f"would send {len(plan.send)} file(s), {human_bytes(plan.bytes_to_send)}, in "
        f"{len(plan.commits)} commit(s); {remote}"
    )


def print_pipeline_result(result) -> None:
    """Summaries of the stages that ran, then where the results are."""
    if result.ingest is not None:
        print_ingest_summary(result.ingest, result.spec.ingested)
    if result.generate is not None:
        print_generate_summary(result.generate, result.spec.generated)
    if result.filter is not None:
        print_filter_summary(result.filter, result.spec.filtered, None)
    if result.export is not None:
        print_export_summary(result.export, result.spec.dataset)
    if result.skipped:
        console.print(f"already done (skipped): {', '.join(result.skipped)}")
    if result.pushed is not None:
        console.print(f"[bold green]pushed:[/] {result.pushed.url}")
    console.print(f"[bold green]report:[/] {result.report}", soft_wrap=True)
    console.print(f"[bold green]dataset:[/] {result.spec.dataset}", soft_wrap=True)


@app.command("run")
def run_cmd(
    pipeline: Annotated[
        str, typer.Argument(help="pipeline file (YAML); see pipelines/ for examples")
    ],
    out: Annotated[str | None, typer.Option(help="write here instead of the file's `out`")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="start every stage over instead of skipping finished ones")
    ] = False,
    push: Annotated[bool, typer.Option(help="run the file's push step, if it has one")] = True,
) -> None:
    """Run a whole pipeline from one YAML file: source -> generate -> filter -> export
    (-> push to the Hub).

    Rerunning skips the stages that finished with the same settings and resumes an
    interrupted one; changing a stage's settings reruns it and every stage after it.
    """
    from .export import ExportError
    from .filters.clip import ClipUnavailableError
    from .hub import HubError
    from .pipeline import PipelineError, load_pipeline, run_pipeline

    try:
        spec = load_pipeline(pipeline, out)
        result = run_pipeline(spec, overwrite=overwrite, push=push)
    except (
        PipelineError,
        SourceError,
        RunConflictError,
        MissingAPIKeyError,
        ModelUnavailableError,
        ClipUnavailableError,
        ExportError,
        HubError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        hint = ""
        if isinstance(exc, SourceError):
            hint = " (the `source:` section of the file: set data_dir etc. to your data)"
        elif isinstance(exc, ModelUnavailableError | ClipUnavailableError):
            hint = " (in the YAML: `generate.model` / `generate.base_url`, `filter.clip`)"
        _fail(f"{pipeline}: {exc}{hint}")
    print_pipeline_result(result)


@app.command("demo")
def demo_cmd(
    out: Annotated[str, typer.Option(help="where to write the demo runs")] = "runs/demo",
    model: Annotated[
        str | None, typer.Option(help=f"local model for generation (default {DEFAULT_LOCAL_MODEL})")
    ] = None,
) -> None:
    """Run the whole pipeline on the built-in sample corpus (no server, no API key):
    ingest, generate, filter, report, export.

    Uses the local default model; offline without its weights, a tiny random model stands
    in (with a warning) so the whole pipeline still runs.
    """
    from .demo import run_demo

    result = run_demo(out, model)
    if result.ingest is not None:
        print_ingest_summary(result.ingest, result.ingested)
    if result.generate is not None:
        print_generate_summary(result.generate, result.generated)
    if result.filter is not None:
        print_filter_summary(result.filter, result.filtered, None)
    if result.export is not None:
        print_export_summary(result.export, result.dataset)
    fallback = ", tiny random fallback" if result.fallback else ""
    console.print(
        f"[bold green]rationales:[/] {result.generated}/data (model: {result.model}{fallback})"
    )
    console.print(
        f"[bold green]filtered:[/] {result.filtered}/data (kept), {result.filtered}/rejected"
    )
    console.print(
        f'load it with datasets.load_dataset("{result.dataset}"); publish it with '
        f"`forge push-to-hub {result.dataset} --repo-id ORG/NAME`",
        soft_wrap=True,
    )
    # The two paths last, unwrapped, so they can be copied.
    console.print(f"[bold green]report:[/] {result.report}", soft_wrap=True)
    console.print(f"[bold green]dataset:[/] {result.dataset}", soft_wrap=True)


@app.command("prompts")
def prompts_cmd(
    out: Annotated[str, typer.Option("--out", help="JSONL file to write")],
    n: Annotated[int, typer.Option("--n", help="how many distinct prompts, both splits")],
    kind: Annotated[
        str,
        typer.Option(
            help="geneval: GenEval's six categories (single/two objects, counting, colours, "
            "position, colour binding); dense: DPG-style scenes; mixed: half each"
        ),
    ] = "geneval",
    val_fraction: Annotated[
        float, typer.Option(help="share of every category put in the val split")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="the same seed gives the same file")] = 0,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            help="evaluation prompts never to produce: JSONL with a 'prompt' field (GenEval's "
            "evaluation_metadata.jsonl), text with one prompt per line, or a directory of "
            "them (DPG-Bench's prompts/); compared ignoring case, spaces and a final period. "
            "Repeatable"
        ),
    ] = None,
    objects: Annotated[
        str,
        typer.Option(
            help="coco: only the 80 COCO classes (checkable by GenEval's detector); "
            "extended: COCO plus common objects outside it"
        ),
    ] = "extended",
    tags: Annotated[
        str | None,
        typer.Option(
            help="only these categories of the kind, comma-separated (e.g. counting,position)"
        ),
    ] = None,
) -> None:
    """Write prompts for RL (GRPO) as GenEval-style JSONL rows: prompt, tag (category),
    include (class, count, color, position) and split (train/val, disjoint).

    Prompts are unique and deterministic for a seed. A draw equal to a prompt in an
    --exclude file is refused and drawn again; the summary counts such draws.
    """
    from .rl_prompts import (
        KINDS,
        ExcludeFileError,
        PromptSpaceError,
        generate_prompts,
        load_exclusions,
        write_jsonl,
    )

    if kind not in KINDS:
        _fail(f"--kind {kind}: expected one of {', '.join(KINDS)}")
    try:
        excluded = load_exclusions(exclude or [])
        chosen = [t.strip() for t in tags.split(",") if t.strip()] if tags else None
        result = generate_prompts(kind, n, val_fraction, seed, excluded, objects, chosen)
    except (ExcludeFileError, PromptSpaceError, ValueError) as exc:
        _fail(str(exc))
    write_jsonl(result.rows, out)
    counts = result.counts()
    rows: list[tuple[str, object]] = []
    for tag in sorted({t for t, _ in counts}):
        rows.append((tag, f"{counts[(tag, 'train')]:,} train / {counts[(tag, 'val')]:,} val"))
    rows += [
        ("prompts written", len(result.rows)),
        ("evaluation prompts loaded", len(excluded)),
        ("draws refused: equal to an evaluation prompt", result.excluded),
        ("draws refused: duplicates", result.duplicates),
    ]
    for tag, k in result.shortfall.items():
        rows.append((f"{tag}: share moved to other categories (space exhausted)", k))
    console.print(summary_table(f"forge prompts ({kind}, seed {seed})", rows))
    console.print(f"[bold green]prompts:[/] {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
