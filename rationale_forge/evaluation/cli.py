"""The command line of ``train/evaluate.py``: flags -> settings -> :func:`.run.evaluate`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..flags import json_object
from ..provenance import redact_argv
from ..ui import console
from . import model as model_mod
from .benchmarks import BENCHES, BenchmarkInputError, read_prompts
from .layouts import LayoutError
from .official import ScorerError
from .report import print_comparison, print_results
from .run import REPO_VARS, EvalSettings, EvaluationError, OfficialSettings, evaluate, load_results
from .scores import compare_results

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


def _compare(dirs: tuple[Path, Path]) -> None:
    a, b = (load_results(d) for d in dirs)
    if a.get("bench") != b.get("bench"):
        console.print(f"[yellow]note: comparing {a.get('bench')} with {b.get('bench')}[/yellow]")
    print_comparison(compare_results(a, b), str(dirs[0]), str(dirs[1]))


@app.command()
def main(
    model: Annotated[
        str | None, typer.Option(help="Janus-Pro checkpoint: a directory or a Hub id")
    ] = None,
    bench: Annotated[
        str | None,
        typer.Option(help=f"benchmark whose layout to write: {', '.join(BENCHES)}"),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="geneval: evaluation_metadata.jsonl; dpg: the prompts/ folder of .txt files; "
            "t2i-compbench: a *_val.txt file or a folder of them; prompts: .txt or .jsonl"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (the benchmark's layout + reports)")
    ] = None,
    n_per_prompt: Annotated[
        int, typer.Option(help="images per prompt (GenEval 4, DPG-Bench 4, T2I-CompBench 10)")
    ] = 4,
    cfg: Annotated[float, typer.Option(help="classifier-free guidance weight")] = 5.0,
    think: Annotated[
        bool, typer.Option(help="write the rationale before drawing (--no-think: draw at once)")
    ] = True,
    max_rationale_tokens: Annotated[int, typer.Option(help="rationale length cap")] = 448,
    temperature: Annotated[float, typer.Option(help="rationale sampling temperature")] = 1.0,
    top_p: Annotated[float, typer.Option(help="rationale nucleus sampling")] = 1.0,
    image_temperature: Annotated[float, typer.Option(help="image token temperature")] = 1.0,
    image_top_p: Annotated[float, typer.Option(help="image token nucleus sampling")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="sampling seed (reproducible runs)")] = None,
    batch_size: Annotated[int, typer.Option(help="images sampled per forward batch")] = 8,
    device: Annotated[
        str | None, typer.Option(help="cuda, cpu, ... (default: cuda if any)")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="model weights dtype, e.g. bfloat16 (default float32)")
    ] = None,
    judge_base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible VLM judge, e.g. http://localhost:8000/v1"),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="judge model name, e.g. Qwen/Qwen2.5-VL-7B-Instruct")
    ] = None,
    judge_mode: Annotated[
        str, typer.Option(help="prob: p(yes)/(p(yes)+p(no)); boxed: \\boxed{1} or \\boxed{0}")
    ] = "prob",
    judge_api_key_env: Annotated[
        str, typer.Option(help="environment variable with the judge's API key, if it needs one")
    ] = "OPENAI_API_KEY",
    judge_extra_body: Annotated[
        str | None,
        typer.Option(
            help="JSON merged into every judge request, e.g. vLLM's "
            '\'{"structured_outputs": {"choice": ["yes", "no"]}}\' for prob mode'
        ),
    ] = None,
    dpg_csv: Annotated[
        Path | None,
        typer.Option(help="dpg: dpg_bench.csv for categories (default: beside prompts/)"),
    ] = None,
    prompt_split: Annotated[
        str | None,
        typer.Option(help="prompts: only JSON rows with this split, e.g. val (forge prompts)"),
    ] = None,
    geneval_repo: Annotated[
        Path | None,
        typer.Option(envvar="GENEVAL_REPO", help="clone of djghosh13/geneval: run its scorer"),
    ] = None,
    geneval_detector: Annotated[
        Path | None,
        typer.Option(
            envvar="GENEVAL_DETECTOR", help="folder with GenEval's Mask2Former checkpoint"
        ),
    ] = None,
    dpg_repo: Annotated[
        Path | None,
        typer.Option(envvar="DPG_BENCH_REPO", help="clone of TencentQQGYLab/ELLA: run DPG-Bench"),
    ] = None,
    t2i_compbench_repo: Annotated[
        Path | None,
        typer.Option(envvar="T2I_COMPBENCH_REPO", help="clone of Karine-Huang/T2I-CompBench"),
    ] = None,
    scorer_python: Annotated[
        str | None,
        typer.Option(
            envvar="SCORER_PYTHON",
            help="python of the scorer's own environment (default: this one)",
        ),
    ] = None,
    rerun_official: Annotated[
        bool, typer.Option(help="run the official scorer again even if its output exists")
    ] = False,
    report_limit: Annotated[int, typer.Option(help="prompts shown in report.html")] = 200,
    chunk_prompts: Annotated[int, typer.Option(help="prompts per sampling call")] = 8,
    overwrite: Annotated[
        bool, typer.Option(help="delete OUT's previous run instead of resuming it")
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="compare two evaluation folders: per-category DIR2 - DIR1"),
    ] = None,
) -> None:
    """Sample a checkpoint on a benchmark's prompts (rationale first with --think), write
    the images where the official scorer reads them, score them with a VLM judge per
    category, run the official scorer when its repository is given, and write
    results.json and report.html. Rerunning the same command resumes."""
    try:
        if compare:
            _compare(compare)
            return
        missing = [
            f"--{n}"
            for n, v in (("model", model), ("bench", bench), ("prompts", prompts), ("out", out))
            if v is None
        ]
        if missing:
            _fail(f"missing {', '.join(missing)} (or use --compare DIR1 DIR2)")
        if bench not in BENCHES:
            _fail(f"--bench {bench!r}: choose one of {', '.join(BENCHES)}")
        if judge_mode not in ("prob", "boxed"):
            _fail(f"--judge-mode {judge_mode!r}: choose prob or boxed")
        if bool(judge_base_url) != bool(judge_model):
            _fail("--judge-base-url and --judge-model go together")
        try:
            config = model_mod.sampling_config(
                think=think,
                max_rationale_tokens=max_rationale_tokens,
                temperature=temperature,
                top_p=top_p,
                image_temperature=image_temperature,
                image_top_p=image_top_p,
                cfg_weight=cfg,
                seed=seed,
                batch_size=batch_size,
            )
        except ValueError as exc:  # a flag out of range
            _fail(str(exc))
        judge, judge_info = None, None
        if judge_base_url:
            try:
                extra = json_object(judge_extra_body, "--judge-extra-body")
            except ValueError as exc:
                _fail(str(exc))
            judge = model_mod.vlm_judge(
                judge_base_url,
                judge_model,
                judge_mode,
                api_key_env=judge_api_key_env,
                extra_body=extra,
            )
            judge_info = {
                "base_url": redact_argv([judge_base_url])[0],
                "model": judge_model,
                "mode": judge_mode,
            }
        repo = {
            "geneval": geneval_repo,
            "prompts": geneval_repo,
            "dpg": dpg_repo,
            "t2i-compbench": t2i_compbench_repo,
        }[bench]
        official = OfficialSettings(
            repo=repo,
            python=scorer_python or sys.executable,
            detector=geneval_detector,
            rerun=rerun_official,
        )
        if repo is None:
            official.python = scorer_python or "python"
        if repo is not None and bench in ("geneval", "prompts") and geneval_detector is None:
            _fail("--geneval-detector (or GENEVAL_DETECTOR) is needed to run GenEval's scorer")
        settings = EvalSettings(
            bench=bench,
            prompts_path=str(prompts),
            out=out,
            n_per_prompt=n_per_prompt,
            model=model,
            dpg_csv=str(dpg_csv) if dpg_csv else None,
            prompt_split=prompt_split,
            chunk_prompts=chunk_prompts,
            report_limit=report_limit,
            overwrite=overwrite,
            progress=progress,
        )
        # read (and check) the prompts before loading the model
        items = read_prompts(bench, prompts, settings.dpg_csv, prompt_split)
        sampler = model_mod.janus_sampler(model, device=device, dtype=dtype)
        results = evaluate(settings, sampler, config, judge, judge_info, official, prompts=items)
        print_results(results)
        console.print(f"results: {out / 'results.json'}  report: {out / 'report.html'}")
        if repo is None:
            console.print(
                f"official scorer: set {REPO_VARS[bench]} or run {out / 'official/commands.sh'}"
            )
    except (BenchmarkInputError, EvaluationError, LayoutError, ScorerError) as exc:
        _fail(str(exc))
    except FileNotFoundError as exc:
        _fail(str(exc))


def run() -> None:
    """Entry point for ``train/evaluate.py``."""
    app(prog_name=os.path.basename(sys.argv[0]) or "evaluate.py")
