"""One evaluation run: sample every prompt, write the benchmark's layout, judge, score, report.

The model is reached only through ``sampler(prompts, n, config) -> samples`` (n samples per
prompt, prompt after prompt; each with ``.prompt``, ``.rationale`` and a PIL ``.image``) and
the judge through ``judge.score(prompts, images) -> results`` (each with ``.score``,
``.reason``, ``.answer``), so any generator and any judge fit.

What OUT holds besides the benchmark's own layout (:mod:`.layouts`)::

    run.json        the settings; a rerun with other settings is refused (--overwrite)
    samples.jsonl   one line per image: key, categories, prompt, k, image path, rationale,
                    judge {score, reason, answer}; appended prompt by prompt, so a rerun
                    after a crash samples only the prompts that are missing
    results.json    every number (judge and official, per category), for comparing runs
    report.html     categories, then each prompt's grid beside its rationales
    official/       the official scorer's commands (commands.sh), log and output
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..ui import ProgressBar, console
from . import official as official_mod
from . import scores
from .benchmarks import BenchPrompt, read_prompts
from .layouts import DPG_MAX_SAMPLES, SampleLike, write_prompt_samples, write_rationales

Sampler = Callable[[list[str], int, Any], Sequence[SampleLike]]

RUN_FILE, SAMPLES_FILE, RESULTS_FILE = "run.json", "samples.jsonl", "results.json"

#: The environment variable naming each benchmark's scorer repository (commands.sh uses it).
REPO_VARS = {
    "geneval": "GENEVAL_REPO",
    "prompts": "GENEVAL_REPO",
    "dpg": "DPG_BENCH_REPO",
    "t2i-compbench": "T2I_COMPBENCH_REPO",
}


class Judge(Protocol):
    def score(self, prompts: list[str], images: list[Image.Image]) -> list[Any]: ...


class EvaluationError(RuntimeError):
    """A run that cannot go on as asked (settings clash, a sampler breaking its contract)."""


@dataclass
class EvalSettings:
    """What to evaluate and where (the sampling settings travel in the sampler's config)."""

    bench: str
    prompts_path: str
    out: Path
    n_per_prompt: int = 4
    model: str = ""
    dpg_csv: str | None = None
    prompt_split: str | None = None  # prompts bench: only rows of this split
    chunk_prompts: int = 8  # prompts per sampler call: progress and memory stay bounded
    report_limit: int = 200  # prompts shown in report.html
    overwrite: bool = False
    progress: bool = True


@dataclass
class OfficialSettings:
    """Where the official scorer is installed; None fields print placeholders instead."""

    repo: Path | None = None
    python: str = field(default_factory=lambda: sys.executable)
    detector: Path | None = None  # GenEval's Mask2Former folder (--model-path)
    rerun: bool = False


def config_dict(config: Any) -> dict[str, Any]:
    """The sampler's config as JSON-able settings."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        raw = dataclasses.asdict(config)
    elif isinstance(config, dict):
        raw = dict(config)
    else:
        raw = {k: v for k, v in vars(config).items() if not k.startswith("_")}
    return json.loads(json.dumps(raw, default=str))


def _prepare_out(out: Path, settings_json: dict[str, Any], overwrite: bool) -> None:
    """Create OUT, or check a previous run there used the same settings (resume)."""
    run_file = out / RUN_FILE
    if out.exists() and any(out.iterdir()):
        if not run_file.exists():
            raise EvaluationError(
                f"{out} is not empty and holds no {RUN_FILE}: choose an empty or new --out"
            )
        if overwrite:
            shutil.rmtree(out)
        else:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
            changed = sorted(
                k
                for k in set(previous) | set(settings_json)
                if previous.get(k) != settings_json.get(k)
            )
            if changed:
                raise EvaluationError(
                    f"{out} holds a run with other settings ({', '.join(changed)} differ); "
                    "pass --overwrite to start over or choose another --out"
                )
            return
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(settings_json, indent=2) + "\n", encoding="utf-8")


def load_records(out: Path, n: int) -> list[dict[str, Any]]:
    """The sample records of prompts already finished (all ``n`` images recorded); a line
    cut short by a crash is ignored."""
    path = out / SAMPLES_FILE
    if not path.exists():
        return []
    by_key: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_key.setdefault(rec["key"], []).append(rec)
    return [r for recs in by_key.values() if len(recs) == n for r in recs]


def _positions(prompts: Sequence[BenchPrompt]) -> list[int]:
    """Each prompt's place within its main category (T2I-CompBench file numbering)."""
    counts: dict[str, int] = {}
    positions = []
    for p in prompts:
        positions.append(counts.get(p.category, 0))
        counts[p.category] = positions[-1] + 1
    return positions


def chunk_seeded(config: Any, number: int) -> Any:
    """``config`` with seed + ``number`` when it has a seed (a dataclass config)."""
    seed = getattr(config, "seed", None)
    if seed is None or not dataclasses.is_dataclass(config):
        return config
    return dataclasses.replace(config, seed=seed + number)


def _judge_dict(result: Any) -> dict[str, Any]:
    score = getattr(result, "score", None)
    return {
        "score": None if score is None else float(score),
        "reason": getattr(result, "reason", None),
        "answer": getattr(result, "answer", None),
    }


def sample_and_write(
    settings: EvalSettings,
    prompts: Sequence[BenchPrompt],
    sampler: Sampler,
    config: Any,
    judge: Judge | None,
) -> list[dict[str, Any]]:
    """Sample the prompts not finished yet, write them in the layout, judge them, and
    append their records; returns every record of the run, in prompt order."""
    out, n, bench = settings.out, settings.n_per_prompt, settings.bench
    think = bool(getattr(config, "think", True))
    records = load_records(out, n)
    done = {r["key"] for r in records}
    # drop half-written prompts' lines so samples.jsonl holds each image once
    (out / SAMPLES_FILE).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    positions = _positions(prompts)
    todo = [(i, p) for i, p in enumerate(prompts) if p.key not in done]
    if done:
        console.print(f"resuming: {len(done)} prompts already sampled, {len(todo)} to go")
    step = max(1, settings.chunk_prompts)
    # Chunks are fixed by prompt position and each gets its own seed (seed + chunk number),
    # so a resumed run draws the same images as an uninterrupted one.
    chunks: dict[int, list[tuple[int, BenchPrompt]]] = {}
    for index, item in todo:
        chunks.setdefault(index // step, []).append((index, item))
    with ProgressBar(len(todo) * n, "sampling", settings.progress) as bar:
        for number, chunk in chunks.items():
            chunk_config = chunk_seeded(config, number)
            texts = [p.prompt for _, p in chunk]
            samples = list(sampler(texts, n, chunk_config))
            if len(samples) != len(texts) * n:
                raise EvaluationError(
                    f"the sampler returned {len(samples)} samples for {len(texts)} prompts x {n}"
                )
            for j, s in enumerate(samples):
                expected = texts[j // n]
                if getattr(s, "prompt", expected) != expected:
                    raise EvaluationError(
                        f"sample {j} is for {s.prompt!r}, expected {expected!r}: the sampler "
                        "must return samples prompt after prompt"
                    )
            verdicts: list[Any] = [None] * len(samples)
            if judge is not None:
                verdicts = list(
                    judge.score(
                        [texts[j // n] for j in range(len(samples))], [s.image for s in samples]
                    )
                )
                if len(verdicts) != len(samples):
                    raise EvaluationError(
                        f"the judge returned {len(verdicts)} results for {len(samples)} images"
                    )
            new: list[dict[str, Any]] = []
            for c, (index, item) in enumerate(chunk):
                group = samples[c * n : (c + 1) * n]
                paths = write_prompt_samples(bench, out, item, positions[index], group)
                for k, (sample, path) in enumerate(zip(group, paths, strict=True)):
                    verdict = verdicts[c * n + k]
                    new.append(
                        {
                            "key": item.key,
                            "index": index,
                            "categories": list(item.categories),
                            "prompt": item.prompt,
                            "k": k,
                            "image": path,
                            "rationale": (sample.rationale or "") if think else None,
                            "seed": getattr(chunk_config, "seed", None),
                            "judge": None if judge is None else _judge_dict(verdict),
                        }
                    )
            with (out / SAMPLES_FILE).open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
            records.extend(new)
            bar.advance(len(samples))
    records.sort(key=lambda r: (r["index"], r["k"]))
    return records


def official_plan(
    settings: EvalSettings,
    records: Sequence[dict[str, Any]],
    official: OfficialSettings | None,
) -> official_mod.OfficialPlan:
    """The official scorer's commands for this run (placeholders where not installed)."""
    out = settings.out.resolve()
    official = official or OfficialSettings(python="python")
    repo = official.repo or Path("${" + REPO_VARS[settings.bench] + "}")
    if settings.bench in ("geneval", "prompts"):
        detector = official.detector or Path("${GENEVAL_DETECTOR}")
        plan = official_mod.geneval_plan(out, repo, detector, official.python)
        if settings.bench == "prompts":
            plan.notes.append(
                "GenEval's scorer reads only prompts with GenEval metadata (tag, include with "
                "COCO classes), as forge prompts writes them"
            )
        return plan
    if settings.bench == "dpg":
        with Image.open(out / records[0]["image"]) as img:
            resolution = img.size[0]
        return official_mod.dpg_plan(out, repo, resolution, settings.n_per_prompt, official.python)
    categories = list(dict.fromkeys(r["categories"][0] for r in records))
    return official_mod.t2i_plan(out, repo, categories, official.python)


def _category_counts(bench: str, records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Images per category (a prompt counts towards each of its categories)."""
    counts: dict[str, int] = {}
    for r in records:
        for cat in r["categories"]:
            counts[cat] = counts.get(cat, 0) + 1
    return {c: counts[c] for c in scores.category_order(bench, counts)}


def _rationale_counts(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    texts = [r["rationale"] for r in records if r["rationale"] is not None]
    words = [len(t.split()) for t in texts]
    return {
        "rationales": len(texts),
        "empty_rationales": sum(1 for w in words if w == 0),
        "mean_rationale_words": sum(words) / len(words) if words else None,
    }


def evaluate(
    settings: EvalSettings,
    sampler: Sampler,
    config: Any,
    judge: Judge | None = None,
    judge_info: dict[str, Any] | None = None,
    official: OfficialSettings | None = None,
    prompts: Sequence[BenchPrompt] | None = None,
) -> dict[str, Any]:
    """Run the whole evaluation into ``settings.out``; returns what ``results.json`` holds.

    ``official`` with a ``repo`` runs the official scorer (its failure is recorded, not
    raised, so the judge's numbers are kept); without one its commands are only written."""
    from .report import write_html_report

    bench, n = settings.bench, settings.n_per_prompt
    if n < 1:
        raise EvaluationError("--n-per-prompt must be at least 1")
    if bench == "dpg" and n > DPG_MAX_SAMPLES:
        raise EvaluationError(
            f"DPG-Bench's scorer reads at most {DPG_MAX_SAMPLES} samples per prompt (a 2x2 "
            f"grid); got --n-per-prompt {n}"
        )
    if prompts is None:
        prompts = read_prompts(
            bench, settings.prompts_path, settings.dpg_csv, settings.prompt_split
        )
    sampling = config_dict(config)
    settings_json = {
        "bench": bench,
        "prompts": str(Path(settings.prompts_path).resolve()),
        "prompt_split": settings.prompt_split,
        "n_prompts": len(prompts),
        "n_per_prompt": n,
        "model": settings.model,
        "sampling": sampling,
        "judge": judge_info if judge is not None else None,
    }
    _prepare_out(settings.out, settings_json, settings.overwrite)
    records = sample_and_write(settings, prompts, sampler, config, judge)
    write_rationales(settings.out, bench, records)

    plan = official_plan(settings, records, official)
    official_dir = settings.out / "official"
    official_dir.mkdir(exist_ok=True)
    commands = "".join(f"{run.shell()}\n" for run in plan.runs)
    (official_dir / "commands.sh").write_text("#!/bin/sh\nset -e\n" + commands, encoding="utf-8")
    official_scores, official_error = None, None
    if official is not None and official.repo is not None:
        try:
            official_scores = official_mod.run_plan(plan, official_dir / "log.txt", official.rerun)
        except (official_mod.ScorerError, scores.ScorerOutputError) as exc:
            official_error = str(exc)
            console.print(f"[red]official scorer: {exc}[/red]")
    elif plan.runs and all(run.output.exists() for run in plan.runs):
        # run by hand with commands.sh: read what it wrote
        try:
            official_scores = plan.read()
        except scores.ScorerOutputError as exc:
            official_error = str(exc)

    results = {
        "bench": bench,
        "model": settings.model,
        "prompts_file": settings_json["prompts"],
        "n_per_prompt": n,
        "think": sampling.get("think"),
        "sampling": sampling,
        "judge_config": settings_json["judge"],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "prompts": len({r["key"] for r in records}),
            "images": len(records),
            **_rationale_counts(records),
            "categories": _category_counts(bench, records),
        },
        "scores": {
            "judge": scores.aggregate_judge(bench, records),
            "official": official_scores,
        },
        "official_scorer": {
            "name": plan.scorer,
            "commands": [run.shell() for run in plan.runs],
            "ran": official is not None and official.repo is not None,
            "error": official_error,
            "notes": plan.notes,
        },
    }
    (settings.out / RESULTS_FILE).write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_html_report(settings.out, results, records, settings.report_limit)
    return results


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``results.json`` (the folder or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file (is this an evaluation folder?)") from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}: not valid JSON ({exc.msg})") from None
