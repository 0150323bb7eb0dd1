"""RL prompts: GenEval-style and dense prompts, splits, determinism, exclusion of
evaluation prompts, and the `forge prompts` command."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from rationale_forge.cli import app
from rationale_forge.rl_prompts import (
    COCO_OBJECTS,
    COLORS,
    GENEVAL_TAGS,
    NUMBERS,
    POSITIONS,
    Obj,
    PromptSpaceError,
    article,
    generate_prompts,
    load_exclusions,
    normalise,
    plural,
)

runner = CliRunner()


def said(cls: str) -> str:
    """How a class is written in a prompt ("pair of skis" for skis)."""
    return Obj(cls, True).text


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_coco_classes_and_english():
    assert len(COCO_OBJECTS) == len(set(COCO_OBJECTS)) == 80
    assert {"computer mouse", "tv remote", "computer keyboard"} <= set(COCO_OBJECTS)
    assert [plural(w) for w in ("bus", "knife", "person", "cherry", "box", "cup", "sheep")] == [
        "buses",
        "knives",
        "people",
        "cherries",
        "boxes",
        "cups",
        "sheep",
    ]
    assert article("orange cat") == "an orange cat" and article("umbrella") == "an umbrella"
    assert article("red apple") == "a red apple" and article("unicorn") == "a unicorn"
    assert normalise("  A Photo of  a Cat. ") == "a photo of a cat"


def test_geneval_rows_follow_the_metadata_format():
    result = generate_prompts("geneval", 480, val_fraction=0.1, seed=3, objects_from="coco")
    rows = result.rows
    assert len(rows) == 480
    tags = Counter(r["tag"] for r in rows)
    assert set(tags) == set(GENEVAL_TAGS) and all(count == 80 for count in tags.values())
    for row in rows:
        prompt, inc = row["prompt"], row["include"]
        assert prompt.startswith("a photo of ")
        assert all(i["class"] in COCO_OBJECTS for i in inc)
        assert all(isinstance(i["count"], int) and i["count"] >= 1 for i in inc)
        tag = row["tag"]
        if tag == "single_object":
            assert (
                len(inc) == 1
                and prompt == f"a photo of {article(inc[0]['class'])}"
                or (inc[0]["class"] in ("skis", "scissors"))
            )
        elif tag == "two_object":
            assert len(inc) == 2 and inc[0]["class"] != inc[1]["class"]
            assert " and " in prompt
        elif tag == "counting":
            (item,) = inc
            assert 2 <= item["count"] <= max(NUMBERS)
            assert prompt == f"a photo of {NUMBERS[item['count']]} {plural(item['class'])}"
            assert row["exclude"] == [{"class": item["class"], "count": item["count"] + 1}]
        elif tag == "colors":
            (item,) = inc
            assert item["color"] in COLORS and f"{item['color']} " in prompt
        elif tag == "position":
            anchor, placed = inc
            relation, index = placed["position"]
            assert relation in POSITIONS and index == 0 and "position" not in anchor
            assert prompt == (
                f"a photo of {article(said(placed['class']))} {relation} "
                f"{article(said(anchor['class']))}"
            )
        elif tag == "color_attr":
            a, b = inc
            assert a["color"] != b["color"] and a["class"] != b["class"]
            # each colour stands right before its own object
            assert prompt == (
                f"a photo of {article(a['color'] + ' ' + said(a['class']))} and "
                f"{article(b['color'] + ' ' + said(b['class']))}"
            )


def test_dense_and_mixed_prompts():
    rows = generate_prompts("dense", 50, seed=1).rows
    assert {r["tag"] for r in rows} == {"dense"}
    for row in rows:
        assert 2 <= len(row["include"]) <= 4 and row["prompt"].endswith(".")
        assert len(row["prompt"].split()) >= 12
        for item in row["include"]:
            assert item.get("color", COLORS[0]) in COLORS
            name = item["class"] if item["count"] == 1 else plural(item["class"])
            assert name.replace("pair of ", "") in row["prompt"]
    mixed = Counter(r["tag"] for r in generate_prompts("mixed", 120, seed=1).rows)
    assert mixed["dense"] == 60 and sum(mixed[t] for t in GENEVAL_TAGS) == 60


def test_splits_are_disjoint_stratified_and_deterministic():
    a = generate_prompts("mixed", 400, val_fraction=0.25, seed=7)
    keys = [normalise(r["prompt"]) for r in a.rows]
    assert len(keys) == len(set(keys))  # no duplicates at all
    train = {normalise(r["prompt"]) for r in a.rows if r["split"] == "train"}
    val = {normalise(r["prompt"]) for r in a.rows if r["split"] == "val"}
    assert not train & val and len(train) + len(val) == 400
    for tag in ("dense", *GENEVAL_TAGS):  # every category is in val, in proportion
        in_tag = [r for r in a.rows if r["tag"] == tag]
        n_val = sum(r["split"] == "val" for r in in_tag)
        assert n_val == round(len(in_tag) * 0.25) and n_val > 0
    assert generate_prompts("mixed", 400, val_fraction=0.25, seed=7).rows == a.rows
    other = generate_prompts("mixed", 400, val_fraction=0.25, seed=8).rows
    assert [r["prompt"] for r in other] != [r["prompt"] for r in a.rows]
    no_val = generate_prompts("geneval", 30, val_fraction=0.0)
    assert {r["split"] for r in no_val.rows} == {"train"}


def test_small_categories_hand_their_share_on_and_impossible_n_is_a_clear_error():
    # 80 single-object prompts exist with COCO objects: the rest of the share moves on
    result = generate_prompts("geneval", 1200, seed=0, objects_from="coco")
    tags = Counter(r["tag"] for r in result.rows)
    assert len(result.rows) == 1200 and tags["single_object"] == 80
    assert result.shortfall == {"single_object": 120}
    with pytest.raises(PromptSpaceError, match=r"--n 100 cannot be reached: only 80 distinct"):
        generate_prompts("geneval", 100, tags=["single_object"], objects_from="coco")
    with pytest.raises(ValueError, match="categories"):
        generate_prompts("geneval", 10, tags=["dense"])
    with pytest.raises(ValueError, match="--val-fraction"):
        generate_prompts("geneval", 10, val_fraction=1.0)


def test_exclusion_refuses_evaluation_prompts(tmp_path):
    first = generate_prompts("geneval", 300, seed=5, objects_from="coco").rows
    evaluation = [r["prompt"] for r in first[::2]]  # half of them become "evaluation" prompts
    # GenEval's metadata format, with the text slightly changed (case, spaces, a period)
    meta = tmp_path / "evaluation_metadata.jsonl"
    meta.write_text(
        "\n".join(
            json.dumps({"tag": "x", "include": [], "prompt": p.upper() + "."})
            for p in evaluation[:100]
        )
        + "\n"
    )
    dpg = tmp_path / "dpg" / "prompts"  # DPG-Bench: one prompt per .txt file
    dpg.mkdir(parents=True)
    for i, p in enumerate(evaluation[100:]):
        (dpg / f"item{i}.txt").write_text(f"  {p}  \n")
    excluded = load_exclusions([meta, tmp_path / "dpg"])
    assert excluded == {normalise(p) for p in evaluation}

    again = generate_prompts("geneval", 300, seed=5, objects_from="coco", exclude=excluded)
    keys = {normalise(r["prompt"]) for r in again.rows}
    assert len(again.rows) == 300 and not keys & excluded
    # the same seed draws the same first prompt, so refusals happen (counted)
    assert again.excluded > 0

    out = tmp_path / "rl.jsonl"
    args = ["prompts", "--kind", "geneval", "--n", "300", "--seed", "5", "--objects", "coco"]
    args += ["--out", str(out), "--exclude", str(meta), "--exclude", str(tmp_path / "dpg")]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert rows == again.rows
    reported = re.search(r"equal to an evaluation prompt\W+([\d,]+)", result.output)
    assert reported and int(reported.group(1).replace(",", "")) == again.excluded


def test_cli_writes_geneval_lines_deterministically(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        result = runner.invoke(
            app, ["prompts", "--kind", "mixed", "--n", "40", "--out", str(path), "--seed", "2"]
        )
        assert result.exit_code == 0, result.output
    assert a.read_bytes() == b.read_bytes()
    rows = _read(a)
    assert len(rows) == 40 and list(rows[0])[:2] == ["tag", "include"]
    assert all(set(r) >= {"prompt", "tag", "include", "split"} for r in rows)
    # the evaluator in this project reads the file as a prompt list
    from rationale_forge.evaluation.benchmarks import read_prompt_list

    listed = read_prompt_list(a)
    assert [p.prompt for p in listed] == [r["prompt"] for r in rows]


def test_cli_errors_name_the_cause(tmp_path):
    out = str(tmp_path / "x.jsonl")
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"prompt": "a photo of a cat"}\n{"tag": "single_object"}\n')
    cases = [
        (["--exclude", str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file"),
        (["--exclude", str(bad)], "eval.jsonl:2: no string 'prompt' field"),
        (["--kind", "geneval", "--tags", "single_object", "--objects", "coco", "--n", "90"],
         "--n 90 cannot be reached: only 80"),
        (["--kind", "vibes"], "--kind vibes"),
        (["--n", "0"], "at least one prompt"),
    ]  # fmt: skip
    for extra, message in cases:
        args = ["prompts", "--out", out, *(["--n", "5"] if "--n" not in extra else []), *extra]
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 2, (extra, result.output)
        assert message in " ".join(result.output.split()), (message, result.output)
    assert not (tmp_path / "x.jsonl").exists()
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text('{"prompt": "ok"}\n{not json\n')
    args = ["prompts", "--n", "5", "--out", out, "--exclude", str(garbled)]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "garbled.jsonl:2: not a JSON object" in " ".join(result.output.split())
