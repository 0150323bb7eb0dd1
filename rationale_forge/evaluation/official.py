"""The official scorers: the exact commands for a run's folder, running them when their
repository is installed, and reading their numbers back.

Each scorer lives in its own environment (mmdet for GenEval, modelscope's mPLUG for
DPG-Bench, BLIP/UniDet/CLIP for T2I-CompBench), so it runs as a subprocess with the
interpreter given as ``python`` (``--scorer-python``), from its repository, on the folder
this package wrote. Its output goes under ``OUT/official/`` (T2I-CompBench's scorers write
beside their images); an output already there is read, not recomputed, so a scorer run by
hand with the printed command is picked up by the next ``evaluate`` run.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import scores

#: T2I-CompBench category -> (script folder inside the repository, script, out flag).
T2I_SCORERS: dict[str, tuple[str, str, str]] = {
    "color": ("BLIPvqa_eval", "BLIP_vqa.py", "--out_dir"),
    "shape": ("BLIPvqa_eval", "BLIP_vqa.py", "--out_dir"),
    "texture": ("BLIPvqa_eval", "BLIP_vqa.py", "--out_dir"),
    "non_spatial": (".", "CLIPScore_eval/CLIP_similarity.py", "--outpath"),
    "spatial": ("UniDet_eval", "2D_spatial_eval.py", "--outpath"),
}


class ScorerError(RuntimeError):
    """An official scorer that failed or is not where it was said to be."""


@dataclass
class ScorerRun:
    """One scorer invocation: argv run in ``cwd``; ``output`` is what it writes."""

    argv: list[str]
    cwd: Path
    output: Path
    label: str = ""

    def shell(self) -> str:
        """The command as one shell line; ``${VAR}`` placeholders stay expandable."""
        return f"cd {_quote(str(self.cwd))} && {' '.join(_quote(a) for a in self.argv)}"


def _quote(arg: str) -> str:
    if "${" in arg and '"' not in arg and "`" not in arg:
        return f'"{arg}"'  # expand the placeholder variable, nothing else
    return shlex.quote(arg)


@dataclass
class OfficialPlan:
    """The runs of one benchmark's scorer and how to read the result."""

    scorer: str
    runs: list[ScorerRun]
    read: Callable[[], dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def geneval_plan(out: Path, repo: Path, detector: Path, python: str) -> OfficialPlan:
    """GenEval: ``evaluate_images.py`` (Mask2Former + CLIP) on OUT, into
    ``OUT/official/geneval_results.jsonl``."""
    result = out / "official" / "geneval_results.jsonl"
    run = ScorerRun(
        [
            python,
            str(repo / "evaluation" / "evaluate_images.py"),
            str(out),
            "--outfile",
            str(result),
            "--model-path",
            str(detector),
        ],
        repo,
        result,
        "geneval",
    )
    return OfficialPlan("geneval", [run], lambda: scores.read_geneval_results(result))


def dpg_plan(out: Path, repo: Path, resolution: int, pic_num: int, python: str) -> OfficialPlan:
    """DPG-Bench: ``compute_dpg_bench.py`` (mPLUG VQA) on ``OUT/images``; its summary is
    appended to ``OUT/official/dpg_results.txt`` (kept out of the image folder, which the
    scorer lists whole)."""
    result = out / "official" / "dpg_results.txt"
    run = ScorerRun(
        [
            python,
            str(repo / "dpg_bench" / "compute_dpg_bench.py"),
            "--image-root-path",
            str(out / "images"),
            "--resolution",
            str(resolution),
            "--pic-num",
            str(pic_num),
            "--vqa-model",
            "mplug",
            "--csv",
            str(repo / "dpg_bench" / "dpg_bench.csv"),
            "--res-path",
            str(result),
        ],
        repo,
        result,
        "dpg",
    )
    return OfficialPlan("dpg", [run], lambda: scores.read_dpg_results(result))


def _t2i_output(category_dir: Path, category: str) -> Path:
    if T2I_SCORERS[category][1] == "BLIP_vqa.py":
        return category_dir / "annotation_blip" / "vqa_result.json"
    if category == "non_spatial":
        return category_dir / "annotation_clip" / "vqa_result.json"
    return category_dir / "labels" / "annotation_obj_detection_2d" / "vqa_result.json"


def t2i_plan(out: Path, repo: Path, categories: Sequence[str], python: str) -> OfficialPlan:
    """T2I-CompBench: BLIP-VQA for color/shape/texture, CLIPScore for non_spatial, UniDet
    for spatial, each on ``OUT/<category>/``. Other categories (complex's 3-in-1, numeracy,
    3d_spatial) need several scorers in turn and are left to the commands in the README."""
    runs, outputs, notes = [], {}, []
    for category in categories:
        if category not in T2I_SCORERS:
            notes.append(f"{category}: no single official scorer; see the README's commands")
            continue
        folder, script, flag = T2I_SCORERS[category]
        category_dir = out / category
        output = _t2i_output(category_dir, category)
        # the scripts join paths as strings: the folder needs its trailing slash
        argv = [python, script, f"{flag}={category_dir}/"]
        runs.append(ScorerRun(argv, repo / folder, output, f"t2i-compbench {category}"))
        outputs[category] = output

    def read() -> dict[str, Any]:
        found = {c: scores.read_t2i_vqa_result(p) for c, p in outputs.items() if p.exists()}
        return scores.t2i_block(found, list(categories))

    return OfficialPlan("t2i-compbench", runs, read, notes)


def run_plan(plan: OfficialPlan, log: Path, rerun: bool = False) -> dict[str, Any]:
    """Run the scorer commands whose output is missing (all of them with ``rerun``),
    appending their output to ``log``, then read the numbers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        if run.output.exists() and not rerun:
            continue
        if not run.cwd.is_dir():
            raise ScorerError(f"{run.label}: scorer directory {run.cwd} does not exist")
        run.output.parent.mkdir(parents=True, exist_ok=True)
        if rerun and run.output.exists():
            run.output.unlink()
        with log.open("a", encoding="utf-8") as f:
            f.write(f"$ {run.shell()}\n")
            f.flush()
            proc = subprocess.run(
                run.argv, cwd=run.cwd, stdout=f, stderr=subprocess.STDOUT, check=False
            )
        if proc.returncode != 0:
            raise ScorerError(
                f"{run.label}: the official scorer exited with {proc.returncode}; "
                f"its output is in {log}"
            )
        if not run.output.exists():
            raise ScorerError(f"{run.label}: the scorer finished but wrote no {run.output}")
    return plan.read()
