"""Benchmark evaluation: the folder layouts the official scorers read, judge scores per
category, --think/--no-think, resuming, official scorer runs, --compare, and the whole
command on a tiny random Janus-Pro with a judge over HTTP."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from PIL import Image
from typer.testing import CliRunner

from rationale_forge.evaluation import cli as cli_mod
from rationale_forge.evaluation import model as model_mod
from rationale_forge.evaluation.benchmarks import BenchmarkInputError, read_prompts
from rationale_forge.evaluation.layouts import LayoutError
from rationale_forge.evaluation.run import (
    EvalSettings,
    EvaluationError,
    OfficialSettings,
    evaluate,
)
from rationale_forge.evaluation.scores import (
    compare_results,
    read_dpg_results,
    read_geneval_results,
)

SIDE = 16  # stand-in samples are tiny squares

# GenEval's evaluation_metadata.jsonl format (fields as in its prompts/ folder)
GENEVAL_LINES = [
    {
        "tag": "single_object",
        "include": [{"class": "bench", "count": 1}],
        "prompt": "a photo of a bench",
    },
    {
        "tag": "single_object",
        "include": [{"class": "cow", "count": 1}],
        "prompt": "a photo of a cow",
    },
    {
        "tag": "counting",
        "include": [{"class": "dog", "count": 2}],
        "exclude": [{"class": "dog", "count": 3}],
        "prompt": "a photo of two dogs",
    },
    {
        "tag": "position",
        "include": [
            {"class": "cat", "count": 1},
            {"class": "car", "count": 1, "position": ["left of", 0]},
        ],
        "prompt": "a photo of a car left of a cat",
    },
]


# --------------------------------------------------------------------------------------
# Stand-ins for the generator and the judge (the logic under test is around them)
# --------------------------------------------------------------------------------------


@dataclass
class FakeConfig:
    think: bool = True
    cfg_weight: float = 5.0
    seed: int | None = 0


@dataclass
class FakeSample:
    prompt: str
    rationale: str
    image: Image.Image


def colour_of(prompt: str, k: int) -> tuple[int, int, int]:
    """A colour that identifies (prompt, sample): layouts are checked pixel by pixel."""
    h = sum(ord(c) * (i + 1) for i, c in enumerate(prompt))
    return (h % 200 + k * 13) % 256, (h // 7) % 256, (k * 50 + 5) % 256


class FakeSampler:
    def __init__(self, fail_after_calls: int | None = None):
        self.calls: list[list[str]] = []
        self.seeds: list[int | None] = []
        self.fail_after_calls = fail_after_calls

    def __call__(self, prompts, n, config):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("out of memory (simulated crash)")
        self.calls.append(list(prompts))
        self.seeds.append(config.seed)
        return [
            FakeSample(
                p,
                f"Plan {k} for {p}: place it in the middle." if config.think else "",
                Image.new("RGB", (SIDE, SIDE), colour_of(p, k)),
            )
            for p in prompts
            for k in range(n)
        ]


@dataclass
class Verdict:
    score: float | None
    reason: str | None = None
    answer: str | None = None


class TableJudge:
    """Scores from a table: prompt -> one score per sample, in call order."""

    def __init__(self, table: dict[str, list[float | None]]):
        self.table = {p: list(v) for p, v in table.items()}
        self.seen: list[tuple[str, tuple]] = []

    def score(self, prompts, images):
        out = []
        for p, img in zip(prompts, images, strict=True):
            self.seen.append((p, img.getpixel((0, 0))))
            s = self.table[p].pop(0)
            out.append(Verdict(s, None if s is not None else "server down", "yes"))
        return out


def write_geneval(path: Path, lines=GENEVAL_LINES) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def write_dpg(root: Path, prompts: dict[str, str], tuples: dict[str, list[str]]) -> Path:
    """ELLA's dpg_bench layout: prompts/<item_id>.txt and dpg_bench.csv beside it."""
    (root / "prompts").mkdir(parents=True)
    for key, text in prompts.items():
        (root / "prompts" / f"{key}.txt").write_text(text)
    with (root / "dpg_bench.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "item_id",
                "text",
                "keywords",
                "proposition_id",
                "dependency",
                "category_broad",
                "category_detailed",
                "tuple",
                "question_natural_language",
            ]
        )
        for key, tups in tuples.items():
            for qid, tup in enumerate(tups, start=1):
                w.writerow(
                    [
                        key,
                        prompts[key],
                        "",
                        qid,
                        "0",
                        tup.split(" -")[0],
                        "",
                        tup,
                        f"Is there {qid}?",
                    ]
                )
    return root / "prompts"


def settings(tmp_path, bench, prompts_path, n=4, **kw) -> EvalSettings:
    return EvalSettings(
        bench=bench,
        prompts_path=str(prompts_path),
        out=tmp_path / "out",
        n_per_prompt=n,
        model="stand-in",
        progress=False,
        **kw,
    )


# --------------------------------------------------------------------------------------
# Readers that do what the official scorers do, to check the layouts against
# --------------------------------------------------------------------------------------


def geneval_scorer_reads(imagedir: Path) -> list[tuple[dict, list[Path]]]:
    """evaluate_images.py's loop: digit folders, json.load(metadata.jsonl), samples/\\d+.png."""
    found = []
    for sub in sorted(os.listdir(imagedir)):
        folder = imagedir / sub
        if not folder.is_dir() or not sub.isdigit():
            continue
        with open(folder / "metadata.jsonl") as fp:
            metadata = json.load(fp)
        images = sorted(
            folder / "samples" / name
            for name in os.listdir(folder / "samples")
            if (folder / "samples" / name).is_file() and re.match(r"\d+\.png", name)
        )
        found.append((metadata, images))
    return found


def dpg_scorer_crops(image_root: Path, resolution: int, pic_num: int) -> dict[str, list]:
    """compute_dpg_bench.py: every file in the root, key = name before the first dot, crops
    (0,0), (r,0), (0,r), (r,r) of side r, the first pic_num of them."""
    r = resolution
    boxes = [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)][:pic_num]
    out = {}
    for fn in os.listdir(image_root):
        with Image.open(image_root / fn) as img:
            out[fn.split(".")[0]] = [img.crop(b).convert("RGB") for b in boxes]
    return out


def t2i_scorer_reads(outpath: Path) -> list[tuple[str, int]]:
    """BLIP_vqa.py / CLIP_similarity.py: samples/ sorted by the number after the last '_',
    the prompt is the name up to the first '_'."""
    names = os.listdir(outpath / "samples")
    names.sort(key=lambda x: int(x.split("_")[-1].split(".")[0]))
    return [(n.split("_")[0], int(n.split("_")[-1].split(".")[0])) for n in names]


# --------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------


def test_geneval_layout_is_what_its_scorer_reads(tmp_path):
    meta = write_geneval(tmp_path / "evaluation_metadata.jsonl")
    s = settings(tmp_path, "geneval", meta, n=4, chunk_prompts=3)
    sampler = FakeSampler()
    results = evaluate(s, sampler, FakeConfig())
    found = geneval_scorer_reads(s.out)
    assert [m for m, _ in found] == GENEVAL_LINES  # folder i holds line i, unchanged
    for metadata, images in found:
        assert [p.name for p in images] == ["0000.png", "0001.png", "0002.png", "0003.png"]
        for k, p in enumerate(images):
            with Image.open(p) as img:
                assert img.getpixel((3, 3)) == colour_of(metadata["prompt"], k)
        assert (images[0].parent.parent / "grid.png").exists()
    assert [len(c) for c in sampler.calls] == [3, 1]  # chunks of 3 prompts
    # rationales beside the images, one line per sample
    lines = [json.loads(x) for x in (s.out / "00002/rationales.jsonl").read_text().splitlines()]
    assert [x["k"] for x in lines] == [0, 1, 2, 3]
    assert lines[1]["rationale"] == "Plan 1 for a photo of two dogs: place it in the middle."
    assert lines[1]["image"] == "00002/samples/0001.png"
    assert results["counts"] == {
        "prompts": 4,
        "images": 16,
        "rationales": 16,
        "empty_rationales": 0,
        "mean_rationale_words": 14.0,  # 13 words for three prompts, 17 for the last
        "categories": {"single_object": 8, "counting": 4, "position": 4},
    }
    cmd = (s.out / "official/commands.sh").read_text()
    assert cmd.splitlines()[-1] == (
        'cd "${GENEVAL_REPO}" && python "${GENEVAL_REPO}/evaluation/evaluate_images.py" '
        f"{s.out.resolve()} --outfile {s.out.resolve()}/official/geneval_results.jsonl "
        '--model-path "${GENEVAL_DETECTOR}"'
    )


def test_dpg_layout_grids_are_cut_back_into_the_samples(tmp_path):
    prompts = {
        "1": "A red truck on a beach at dusk.",
        "partiprompts7": "Two cats.",
        "10": "A tall glass vase.",
    }
    tuples = {
        "1": ["entity - whole (truck)", "attribute - color (truck, red)"],
        "partiprompts7": ["entity - whole (cat)", "other - count (cat, ==2)"],
        "10": ["entity - whole (vase)", "attribute - shape (vase, tall)"],
    }
    folder = write_dpg(tmp_path / "dpg_bench", prompts, tuples)
    for n in (4, 3, 1):
        s = settings(tmp_path / f"n{n}", "dpg", folder, n=n)
        evaluate(s, FakeSampler(), FakeConfig())
        crops = dpg_scorer_crops(s.out / "images", SIDE, n)
        assert set(crops) == set(prompts)  # nothing else in the folder the scorer lists
        for key, pieces in crops.items():
            assert [c.getpixel((5, 5)) for c in pieces] == [
                colour_of(prompts[key], k) for k in range(n)
            ]
        assert f"--resolution {SIDE} --pic-num {n}" in (s.out / "official/commands.sh").read_text()
        assert (s.out / "rationales" / "partiprompts7.jsonl").exists()
    with pytest.raises(EvaluationError, match="at most 4"):
        evaluate(settings(tmp_path / "n5", "dpg", folder, n=5), FakeSampler(), FakeConfig())


def test_dpg_refuses_non_square_samples(tmp_path):
    folder = write_dpg(tmp_path / "d", {"1": "x"}, {"1": ["entity - whole (x)"]})

    def wide(prompts, n, config):
        return [FakeSample(p, "", Image.new("RGB", (20, 10))) for p in prompts for _ in range(n)]

    with pytest.raises(LayoutError, match="squares"):
        evaluate(settings(tmp_path, "dpg", folder), wide, FakeConfig())


def test_t2i_compbench_names_and_order_match_its_scorers(tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    color = [
        "a green bench and a blue bowl",
        "a red car and a white sheep",
        "A bathroom with white tile and a beige toilet.",
    ]
    (data / "color_val.txt").write_text("\n".join(color) + "\n")
    (data / "spatial_val.txt").write_text("a horse on the right of a car\tx\na cat near a dog\n")
    s = settings(tmp_path, "t2i-compbench", data, n=2)
    evaluate(s, FakeSampler(), FakeConfig())
    read = t2i_scorer_reads(s.out / "color")
    assert read == [(color[i // 2], i) for i in range(6)]  # prompt after prompt, counted
    assert t2i_scorer_reads(s.out / "spatial") == [
        ("a horse on the right of a car", 0),
        ("a horse on the right of a car", 1),
        ("a cat near a dog", 2),
        ("a cat near a dog", 3),
    ]
    with Image.open(s.out / "color/samples" / f"{color[1]}_000003.png") as img:
        assert img.getpixel((0, 0)) == colour_of(color[1], 1)
    assert (s.out / "color/rationales.jsonl").exists()
    assert "BLIP_vqa.py --out_dir=" in (s.out / "official/commands.sh").read_text()


def test_bad_prompt_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "meta.jsonl"
    bad.write_text(json.dumps(GENEVAL_LINES[0]) + "\n\n{not json\n")
    with pytest.raises(BenchmarkInputError, match=r"meta.jsonl:3: not valid JSON"):
        read_prompts("geneval", bad)
    bad.write_text(json.dumps({"prompt": "a cat"}) + "\n")
    with pytest.raises(BenchmarkInputError, match=r"meta.jsonl:1: field 'tag' missing"):
        read_prompts("geneval", bad)
    t2i = tmp_path / "color_val.txt"
    t2i.write_text("a red car\na blue_bird on a branch\n")
    with pytest.raises(BenchmarkInputError, match=r"color_val.txt:2: prompt contains '_'"):
        read_prompts("t2i-compbench", t2i)
    dpg = tmp_path / "dpg"
    dpg.mkdir()
    (dpg / "a.b.txt").write_text("x")
    with pytest.raises(BenchmarkInputError, match=r"a.b.txt: .*before the first dot"):
        read_prompts("dpg", dpg)
    with pytest.raises(BenchmarkInputError, match="no such file"):
        read_prompts("prompts", tmp_path / "missing.txt")
    runner = CliRunner()
    res = runner.invoke(
        cli_mod.app,
        ["--model", "m", "--bench", "geneval", "--prompts", str(bad), "--out", str(tmp_path / "o")],
    )
    assert res.exit_code == 2 and "meta.jsonl:1" in res.output


# --------------------------------------------------------------------------------------
# Judge scores per category
# --------------------------------------------------------------------------------------


def test_judge_scores_are_aggregated_per_geneval_task(tmp_path):
    meta = write_geneval(tmp_path / "m.jsonl")
    table = {
        "a photo of a bench": [1.0, 1.0, 0.0, 1.0],
        "a photo of a cow": [0.5, None, 0.5, 0.5],  # one image the judge could not score
        "a photo of two dogs": [0.0, 0.0, 0.0, 1.0],
        "a photo of a car left of a cat": [0.2, 0.4, 0.6, 0.8],
    }
    judge = TableJudge(table)
    s = settings(tmp_path, "geneval", meta)
    results = evaluate(s, FakeSampler(), FakeConfig(), judge, {"model": "table"})
    block = results["scores"]["judge"]
    cats = block["categories"]
    assert list(cats) == ["single_object", "counting", "position"]  # GenEval's order
    assert cats["single_object"] == {"score": pytest.approx(4.5 / 7), "n": 7, "failed": 1}
    assert cats["counting"]["score"] == pytest.approx(0.25)
    assert cats["position"]["score"] == pytest.approx(0.5)
    # GenEval's overall: the mean of the task scores, not of the images
    assert block["overall"] == pytest.approx((4.5 / 7 + 0.25 + 0.5) / 3)
    assert block["images"] == pytest.approx((3 + 1.5 + 1 + 2) / 15)
    # the judge saw each prompt with its own images
    assert judge.seen[4] == ("a photo of a cow", colour_of("a photo of a cow", 0))
    rec = [json.loads(x) for x in (s.out / "samples.jsonl").read_text().splitlines()]
    assert rec[5]["judge"] == {"score": None, "reason": "server down", "answer": "yes"}
    saved = json.loads((s.out / "results.json").read_text())
    assert saved["scores"]["judge"]["overall"] == pytest.approx(block["overall"])
    html = (s.out / "report.html").read_text()
    assert "a photo of two dogs" in html and "Plan 3 for a photo of a bench" in html
    assert html.count('class="card eval"') == 4


def test_dpg_judge_scores_count_towards_each_category_of_a_prompt(tmp_path):
    prompts = {"1": "A red truck.", "2": "Two cats."}
    tuples = {
        "1": ["entity - whole (truck)", "attribute - color (truck, red)"],
        "2": ["entity - whole (cat)", "other - count (cat, ==2)"],
    }
    folder = write_dpg(tmp_path / "dpg_bench", prompts, tuples)
    judge = TableJudge({"A red truck.": [1.0, 0.0], "Two cats.": [0.5, 0.5]})
    results = evaluate(
        settings(tmp_path, "dpg", folder, n=2), FakeSampler(), FakeConfig(), judge, {"model": "t"}
    )
    cats = results["scores"]["judge"]["categories"]
    assert cats["entity"]["score"] == pytest.approx(0.5) and cats["entity"]["n"] == 4
    assert cats["attribute"]["score"] == pytest.approx(0.5) and cats["attribute"]["n"] == 2
    assert cats["other"]["score"] == pytest.approx(0.5)
    assert results["scores"]["judge"]["overall"] == pytest.approx(0.5)  # mean over images
    # without the csv, one category
    (tmp_path / "dpg_bench" / "dpg_bench.csv").unlink()
    judge = TableJudge({"A red truck.": [1.0, 0.0], "Two cats.": [1.0, 1.0]})
    results = evaluate(
        settings(tmp_path / "b", "dpg", folder, n=2),
        FakeSampler(),
        FakeConfig(),
        judge,
        {"model": "t"},
    )
    assert list(results["scores"]["judge"]["categories"]) == ["all"]
    assert results["scores"]["judge"]["overall"] == pytest.approx(0.75)


def test_prompt_lists_use_their_tags_or_all(tmp_path):
    jl = tmp_path / "rl.jsonl"
    jl.write_text(
        json.dumps({"prompt": "a red cube", "tag": "colors", "include": []})
        + "\n"
        + json.dumps({"prompt": "two cubes", "tag": "counting"})
        + "\n"
    )
    judge = TableJudge({"a red cube": [1.0], "two cubes": [0.0]})
    results = evaluate(
        settings(tmp_path, "prompts", jl, n=1), FakeSampler(), FakeConfig(), judge, {"model": "t"}
    )
    cats = results["scores"]["judge"]["categories"]
    assert list(cats) == ["counting", "colors"] and cats["colors"]["score"] == 1.0
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\n")
    got = read_prompts("prompts", txt)
    assert [(p.key, p.prompt, p.categories) for p in got] == [
        ("00000", "one", ("all",)),
        ("00001", "two", ("all",)),
    ]


# --------------------------------------------------------------------------------------
# --think / --no-think through the command line
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("think", [True, False])
def test_think_flag_produces_or_omits_rationales(tmp_path, monkeypatch, think):
    sampler = FakeSampler()
    configs = []

    def fake_loader(model, device=None, dtype=None):
        def sample(prompts, n, config):
            configs.append(config)
            return sampler(prompts, n, config)

        return sample

    monkeypatch.setattr(model_mod, "janus_sampler", fake_loader)
    meta = write_geneval(tmp_path / "m.jsonl", GENEVAL_LINES[:2])
    out = tmp_path / "out"
    args = [
        "--model",
        "ckpt",
        "--bench",
        "geneval",
        "--prompts",
        str(meta),
        "--out",
        str(out),
        "--n-per-prompt",
        "2",
        "--cfg",
        "3.5",
        "--seed",
        "7",
        "--no-progress",
        "--think" if think else "--no-think",
    ]
    res = CliRunner().invoke(cli_mod.app, args)
    assert res.exit_code == 0, res.output
    assert configs[0].think is think and configs[0].cfg_weight == 3.5 and configs[0].seed == 7
    files = sorted(out.glob("*/rationales.jsonl"))
    records = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    if think:
        assert len(files) == 2 and all(r["rationale"].startswith("Plan") for r in records)
    else:
        assert files == [] and all(r["rationale"] is None for r in records)
    results = json.loads((out / "results.json").read_text())
    assert results["think"] is think and results["sampling"]["cfg_weight"] == 3.5
    assert "single_object" in res.output  # the console table


def test_judge_extra_body_reaches_the_judge_and_bad_json_is_refused(tmp_path, monkeypatch):
    made = []
    prompt = GENEVAL_LINES[0]["prompt"]
    monkeypatch.setattr(model_mod, "janus_sampler", lambda *a, **k: FakeSampler())
    monkeypatch.setattr(
        model_mod,
        "vlm_judge",
        lambda url, model, mode, **options: made.append(options) or TableJudge({prompt: [1.0]}),
    )
    meta = write_geneval(tmp_path / "m.jsonl", GENEVAL_LINES[:1])
    base = ["--model", "ckpt", "--bench", "geneval", "--prompts", str(meta), "--no-progress",
            "--n-per-prompt", "1", "--judge-base-url", "http://127.0.0.1:9/v1",
            "--judge-model", "j"]  # fmt: skip
    choice = '{"structured_outputs": {"choice": ["yes", "no"]}}'
    res = CliRunner().invoke(
        cli_mod.app, [*base, "--out", str(tmp_path / "a"), "--judge-extra-body", choice]
    )
    assert res.exit_code == 0, res.output
    assert made[0]["extra_body"] == {"structured_outputs": {"choice": ["yes", "no"]}}
    res = CliRunner().invoke(
        cli_mod.app, [*base, "--out", str(tmp_path / "b"), "--judge-extra-body", "{choice"]
    )
    assert res.exit_code != 0 and "--judge-extra-body is not JSON" in res.output


# --------------------------------------------------------------------------------------
# Resuming
# --------------------------------------------------------------------------------------


def test_a_crashed_run_resumes_and_other_settings_are_refused(tmp_path):
    meta = write_geneval(tmp_path / "m.jsonl")
    s = settings(tmp_path, "geneval", meta, n=2, chunk_prompts=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(s, FakeSampler(fail_after_calls=2), FakeConfig(seed=10))
    # a torn last line, as a crash mid-write leaves it
    with (s.out / "samples.jsonl").open("a") as f:
        f.write('{"key": "00002", "ind')
    again = FakeSampler()
    results = evaluate(s, again, FakeConfig(seed=10))
    assert again.calls == [["a photo of two dogs"], ["a photo of a car left of a cat"]]
    # each chunk has its own seed, the same whether or not the run was interrupted
    assert again.seeds == [12, 13]
    assert results["counts"]["images"] == 8
    assert len((s.out / "samples.jsonl").read_text().splitlines()) == 8
    with pytest.raises(EvaluationError, match="n_per_prompt"):
        evaluate(settings(tmp_path, "geneval", meta, n=3), FakeSampler(), FakeConfig())
    s3 = settings(tmp_path, "geneval", meta, n=3, overwrite=True)
    assert evaluate(s3, FakeSampler(), FakeConfig())["counts"]["images"] == 12
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    s4 = EvalSettings("geneval", str(meta), stranger, progress=False)
    with pytest.raises(EvaluationError, match="not empty"):
        evaluate(s4, FakeSampler(), FakeConfig())


def test_sampler_contract_is_checked(tmp_path):
    meta = write_geneval(tmp_path / "m.jsonl", GENEVAL_LINES[:2])

    def shuffled(prompts, n, config):
        return [FakeSample(p, "", Image.new("RGB", (4, 4))) for _ in range(n) for p in prompts]

    with pytest.raises(EvaluationError, match="prompt after prompt"):
        evaluate(settings(tmp_path, "geneval", meta, n=2), shuffled, FakeConfig())


# --------------------------------------------------------------------------------------
# Official scorers
# --------------------------------------------------------------------------------------

FAKE_GENEVAL_SCORER = """
import argparse, json, os, re
p = argparse.ArgumentParser()
p.add_argument("imagedir"); p.add_argument("--outfile"); p.add_argument("--model-path")
a = p.parse_args()
assert os.path.isdir(a.model_path)
rows = []
for sub in os.listdir(a.imagedir):
    folder = os.path.join(a.imagedir, sub)
    if not os.path.isdir(folder) or not sub.isdigit():
        continue
    with open(os.path.join(folder, "metadata.jsonl")) as fp:
        meta = json.load(fp)
    for name in os.listdir(os.path.join(folder, "samples")):
        if not re.match(r"\\d+\\.png", name):
            continue
        # a stand-in detector: sample 0 is always right, the others only for single objects
        correct = name == "0000.png" or meta["tag"] == "single_object"
        rows.append({"filename": name, "tag": meta["tag"], "prompt": meta["prompt"],
                     "correct": correct, "reason": "", "metadata": json.dumps(meta)})
with open(a.outfile, "w") as fp:
    fp.writelines(json.dumps(r) + "\\n" for r in rows)
"""


def test_geneval_scorer_runs_from_its_repo_and_its_numbers_are_collected(tmp_path):
    repo = tmp_path / "geneval"
    (repo / "evaluation").mkdir(parents=True)
    (repo / "evaluation/evaluate_images.py").write_text(FAKE_GENEVAL_SCORER)
    detector = tmp_path / "detector"
    detector.mkdir()
    meta = write_geneval(tmp_path / "m.jsonl")
    official = OfficialSettings(repo=repo, python=sys.executable, detector=detector)
    s = settings(tmp_path, "geneval", meta, n=4)
    results = evaluate(s, FakeSampler(), FakeConfig(), official=official)
    off = results["scores"]["official"]
    assert off["categories"]["single_object"] == {"score": 1.0, "n": 8, "failed": 0}
    assert off["categories"]["counting"]["score"] == 0.25
    assert off["categories"]["position"]["score"] == 0.25
    assert off["overall"] == pytest.approx(0.5)  # (1 + 0.25 + 0.25) / 3
    assert off["prompts"] == 1.0
    assert "evaluate_images.py" in (s.out / "official/log.txt").read_text()
    assert results["official_scorer"]["ran"] and results["official_scorer"]["error"] is None
    # a broken scorer: the error is recorded, the rest of the run kept
    (repo / "evaluation/evaluate_images.py").write_text("import sys; sys.exit('no mmdet')")
    official.rerun = True
    results = evaluate(s, FakeSampler(), FakeConfig(), official=official)
    assert "exited with 1" in results["official_scorer"]["error"]
    assert results["scores"]["official"] is None and results["counts"]["images"] == 16


def test_official_outputs_are_read_in_their_formats(tmp_path):
    res = tmp_path / "results.jsonl"
    rows = [
        ("a", "colors", True),
        ("a", "colors", False),
        ("b", "colors", False),
        ("b", "colors", False),
        ("c", "position", True),
    ]
    res.write_text(
        "".join(json.dumps({"tag": t, "correct": c, "metadata": m}) + "\n" for m, t, c in rows)
    )
    g = read_geneval_results(res)
    assert g["categories"]["colors"]["score"] == 0.25 and g["overall"] == pytest.approx(0.625)
    assert g["prompts"] == pytest.approx(2 / 3)
    # what compute_dpg_bench.py appends to --res-path
    dpg = tmp_path / "dpg.txt"
    dpg.write_text(
        "/x/images/1.png, 0.5, 0.75, 0.625\n/x/images/2.png, 1.0, 1.0, 1.0\n"
        "Model: images\nL1 category scores:\n\tentity: 90.5\n\tattribute: 80.0\n"
        "L2 category scores:\n\tentity - whole: 91.0\nImage path: /x/images\n"
        "Save results to: /x/dpg.txt\nDPG-Bench score: 84.19\n"
    )
    d = read_dpg_results(dpg)
    assert d["overall"] == pytest.approx(0.8419) and d["n"] == 2
    assert d["categories"] == {
        "entity": {"score": pytest.approx(0.905), "n": None, "failed": 0},
        "attribute": {"score": pytest.approx(0.8), "n": None, "failed": 0},
    }


# --------------------------------------------------------------------------------------
# --compare
# --------------------------------------------------------------------------------------


def test_compare_subtracts_per_category(tmp_path):
    def run_dir(name, judge, official):
        d = tmp_path / name
        d.mkdir()
        block = lambda cats: {  # noqa: E731
            "overall": sum(cats.values()) / len(cats),
            "categories": {c: {"score": v, "n": 4, "failed": 0} for c, v in cats.items()},
        }
        scores = {"judge": block(judge), "official": block(official) if official else None}
        (d / "results.json").write_text(json.dumps({"bench": "geneval", "scores": scores}))
        return d

    a = run_dir("a", {"counting": 0.25, "colors": 0.5}, None)
    b = run_dir("b", {"counting": 0.75, "colors": 0.375, "position": 0.5}, {"colors": 0.9})
    rows = compare_results(
        json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    )
    by = {(r["source"], r["category"]): r for r in rows}
    assert by[("judge", "counting")]["diff"] == pytest.approx(0.5)
    assert by[("judge", "colors")]["diff"] == pytest.approx(-0.125)
    assert by[("judge", "position")] == {
        "source": "judge",
        "category": "position",
        "a": None,
        "b": 0.5,
        "diff": None,
    }
    assert by[("judge", "overall")]["diff"] == pytest.approx(1.625 / 3 - 0.375)
    assert by[("official", "colors")]["diff"] is None
    res = CliRunner().invoke(cli_mod.app, ["--compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "+0.500" in res.output and "-0.125" in res.output
    res = CliRunner().invoke(cli_mod.app, ["--compare", str(a), str(tmp_path / "none")])
    message = " ".join(res.output.split())  # the console wraps long lines
    assert res.exit_code == 2 and "none: no such file (is this an evaluation folder?)" in message


# --------------------------------------------------------------------------------------
# End to end: tiny random Janus-Pro, real sampling, a judge over HTTP
# --------------------------------------------------------------------------------------


class YesNoServer(FakeOpenAI):
    """Answers a one-token yes/no judge with log-probs: p(yes) = 0.8 for prompts naming a
    dog, 0.3 otherwise."""

    def handle(self, handler, body: dict) -> None:
        text = next(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")
        with self._lock:
            self.requests.append(text)
        p = 0.8 if "dog" in text else 0.3
        top = [
            {"token": "Yes", "logprob": math.log(p), "bytes": None},
            {"token": "No", "logprob": math.log(1 - p), "bytes": None},
        ]
        choice = {
            "index": 0,
            "finish_reason": "length",
            "message": {"role": "assistant", "content": "Yes"},
            "logprobs": {
                "content": [{"token": "Yes", "logprob": top[0]["logprob"], "top_logprobs": top}]
            },
        }
        handler._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.fixture(scope="module")
def tiny_janus(tmp_path_factory) -> Path:
    from rationale_forge.training.tiny import build_tiny_janus

    return build_tiny_janus(tmp_path_factory.mktemp("tiny-janus"))


@pytest.mark.parametrize("think", [True, False])
def test_end_to_end_with_tiny_janus_and_a_judge(tmp_path, tiny_janus, think):
    meta = write_geneval(tmp_path / "m.jsonl", GENEVAL_LINES[1:3])
    out = tmp_path / "out"
    with YesNoServer() as server:
        args = [
            "--model",
            str(tiny_janus),
            "--bench",
            "geneval",
            "--prompts",
            str(meta),
            "--out",
            str(out),
            "--n-per-prompt",
            "2",
            "--seed",
            "0",
            "--device",
            "cpu",
            "--max-rationale-tokens",
            "6",
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "fake-vlm",
            "--judge-mode",
            "prob",
            "--no-progress",
            "--think" if think else "--no-think",
        ]
        res = CliRunner().invoke(cli_mod.app, args)
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 4
    found = geneval_scorer_reads(out)
    assert [m["prompt"] for m, _ in found] == ["a photo of a cow", "a photo of two dogs"]
    side = None
    for _, images in found:
        assert len(images) == 2
        for p in images:
            with Image.open(p) as img:
                assert img.mode == "RGB" and img.size[0] == img.size[1]
                side = img.size[0]
    assert side == 64  # the tiny model draws 64 px images
    records = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    if think:
        assert all(isinstance(r["rationale"], str) for r in records)
        assert len(list(out.glob("*/rationales.jsonl"))) == 2
    else:
        assert all(r["rationale"] is None for r in records)
        assert not list(out.glob("*/rationales.jsonl"))
    results = json.loads((out / "results.json").read_text())
    cats = results["scores"]["judge"]["categories"]
    assert cats["single_object"]["score"] == pytest.approx(0.3, abs=1e-6)
    assert cats["counting"]["score"] == pytest.approx(0.8, abs=1e-6)
    assert results["scores"]["judge"]["overall"] == pytest.approx(0.55, abs=1e-6)
    assert results["judge_config"] == {
        "base_url": server.base_url,
        "model": "fake-vlm",
        "mode": "prob",
    }
    assert results["sampling"]["think"] is think and results["sampling"]["cfg_weight"] == 5.0
    assert (out / "report.html").stat().st_size > 1000


FAKE_T2I_SCORER = """
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--out_dir"); p.add_argument("--outpath")
a = p.parse_args()
out = a.out_dir or a.outpath
names = os.listdir(out + "samples/")  # joined as strings, as the official scripts do
names.sort(key=lambda x: int(x.split("_")[-1].split(".")[0]))
# a stand-in VQA model: the answer is 1 for prompts naming a car, else 0.5
rows = [{"question_id": i, "answer": "1.0" if "car" in n.split("_")[0] else "0.5"}
        for i, n in enumerate(names)]
sub = "annotation_blip" if a.out_dir else "annotation_clip"
os.makedirs(os.path.join(out, sub), exist_ok=True)
json.dump(rows, open(os.path.join(out, sub, "vqa_result.json"), "w"))
"""


def test_t2i_compbench_scorers_run_per_category(tmp_path):
    repo = tmp_path / "T2I-CompBench"
    (repo / "BLIPvqa_eval").mkdir(parents=True)
    (repo / "CLIPScore_eval").mkdir()
    (repo / "BLIPvqa_eval/BLIP_vqa.py").write_text(FAKE_T2I_SCORER)
    (repo / "CLIPScore_eval/CLIP_similarity.py").write_text(FAKE_T2I_SCORER)
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "color_val.txt").write_text("a red car\na blue bird\n")
    (data / "non_spatial_val.txt").write_text("a man driving a car\n")
    (data / "complex_val.txt").write_text("a cat on a mat\n")
    s = settings(tmp_path, "t2i-compbench", data, n=2)
    official = OfficialSettings(repo=repo, python=sys.executable)
    results = evaluate(s, FakeSampler(), FakeConfig(), official=official)
    off = results["scores"]["official"]
    assert off["categories"] == {
        "color": {"score": 0.75, "n": 4, "failed": 0},
        "non_spatial": {"score": 1.0, "n": 2, "failed": 0},
    }
    assert off["overall"] == pytest.approx(0.875)
    assert results["official_scorer"]["notes"] == [
        "complex: no single official scorer; see the README's commands"
    ]


def test_forge_prompts_val_split_is_scored_by_tag(tmp_path):
    from rationale_forge.rl_prompts import generate_prompts, write_jsonl

    made = generate_prompts("mixed", 24, val_fraction=0.25, seed=1)
    path = tmp_path / "rl.jsonl"
    write_jsonl(made.rows, path)
    val = [r for r in made.rows if r["split"] == "val"]
    judge = TableJudge({r["prompt"]: [1.0 if r["tag"] == "dense" else 0.0] for r in val})
    s = settings(tmp_path, "prompts", path, n=1, prompt_split="val")
    results = evaluate(s, FakeSampler(), FakeConfig(), judge, {"model": "t"})
    cats = results["scores"]["judge"]["categories"]
    assert results["counts"]["prompts"] == len(val) and set(cats) == {r["tag"] for r in val}
    assert cats["dense"]["score"] == 1.0
    assert all(c["score"] == 0.0 for name, c in cats.items() if name != "dense")
    # GenEval's layout keeps each row as its metadata, counting's exclude clause included
    found = {m["prompt"]: m for m, _ in geneval_scorer_reads(s.out)}
    assert all(found[r["prompt"]]["include"] == r["include"] for r in val)
    with pytest.raises(BenchmarkInputError, match="no rows with split 'test'"):
        read_prompts("prompts", path, split="test")


def test_resumed_run_draws_the_same_images_with_tiny_janus(tmp_path, tiny_janus):
    sampler = model_mod.janus_sampler(str(tiny_janus), device="cpu")
    config = model_mod.sampling_config(think=True, max_rationale_tokens=4, seed=3)
    meta = write_geneval(tmp_path / "m.jsonl", GENEVAL_LINES[:3])
    whole = settings(tmp_path / "whole", "geneval", meta, n=2, chunk_prompts=1)
    evaluate(whole, sampler, config)

    calls = []

    def crashing(prompts, n, cfg):
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        calls.append(prompts)
        return sampler(prompts, n, cfg)

    broken = settings(tmp_path / "broken", "geneval", meta, n=2, chunk_prompts=1)
    with pytest.raises(RuntimeError):
        evaluate(broken, crashing, config)
    evaluate(broken, sampler, config)
    for key in ("00000", "00001", "00002"):
        for k in range(2):
            rel = f"{key}/samples/{k:04d}.png"
            assert (whole.out / rel).read_bytes() == (broken.out / rel).read_bytes(), rel
    a = (whole.out / "00001/rationales.jsonl").read_text()
    assert a == (broken.out / "00001/rationales.jsonl").read_text()
