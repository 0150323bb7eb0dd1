"""Rule checks (text and image), the registry and the presets, on hand-written rows."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw, ImageFont

from rationale_forge.filters import image_checks
from rationale_forge.filters.rules import (
    COCO_CATEGORIES,
    PRESETS,
    RULES,
    AspectRatio,
    Boilerplate,
    CaptionCoverage,
    Counts,
    Facets,
    Hallucination,
    ImageSize,
    LanguageCheck,
    Length,
    ObjectsMentioned,
    Positions,
    Repetition,
    TextInImage,
    Variants,
    build_rules,
    count_claims,
    position_claims,
    rule_params,
)
from rationale_forge.schema import IMAGE_CHECKS, TEXT_CHECKS

RATIONALE = (
    "A golden retriever dog sits on the left, its tail curled around its paws while it looks "
    "up at the counter of a sunny kitchen. Two red mugs rest on a wooden dining table in the "
    "center, steam rising gently from each one. A woman in a blue apron stands on the right, "
    "slicing bread on a cutting board. Warm morning light pours through a tall window and "
    "paints long soft shadows across the tiled floor. The palette stays warm: honey wood, "
    "cream walls, copper pans hanging above the stove. Keep the camera at eye level so the "
    "viewer shares the dog's view of the table, with the dog as the focal point and the woman "
    "balancing the composition. Small details matter: crumbs on the board, a folded towel, a "
    "herb pot on the sill, and the glint of light on the mugs. The mood is calm and homely."
)


def make_row(**overrides):
    row = {
        "rationale": RATIONALE,
        "layout": "Dog on the left, table with two mugs in the center, woman on the right.",
        "style": "Warm natural light, photographic realism, soft shadows, honey tones.",
        "composition": "Eye-level view, the dog as focal point, balanced by the woman.",
        "short_caption": "A dog waits in a sunny kitchen while a woman slices bread.",
        "paraphrases": [
            "A golden retriever watches a woman cut bread in a bright kitchen.",
            "In a warm kitchen, a woman slices bread as her dog looks on.",
        ],
        "varied_captions": [
            "Dog and woman in a kitchen.",
            "A sunny kitchen with two red mugs on a wooden table and a woman slicing bread.",
        ],
        "object_prompts": ["a golden retriever sitting", "two red mugs", "a woman in an apron"],
        "tags": ["dog", "kitchen", "woman", "bread", "morning light"],
        "step_by_step": "1. Draw the kitchen. 2. Place the dog on the left. 3. Add the table.",
        "object_centric": [],
        "region_descriptions": [],
        "captions": [
            "A dog sits in a kitchen near a woman cutting bread.",
            "Two red mugs on a table in a kitchen with a dog and a woman.",
        ],
        "objects": [
            {"category": "dog", "bbox": [20, 200, 150, 180], "area": 20000.0},
            {"category": "cup", "bbox": [300, 230, 40, 50], "area": 1800.0},
            {"category": "cup", "bbox": [350, 230, 40, 50], "area": 1800.0},
            {"category": "dining table", "bbox": [220, 260, 200, 120], "area": 20000.0},
            {"category": "person", "bbox": [470, 80, 120, 380], "area": 30000.0},
        ],
        "width": 640,
        "height": 480,
        "image": None,
    }
    row.update(overrides)
    return row


def test_every_check_named_in_schema_is_registered():
    assert set(RULES) == set(TEXT_CHECKS) | set(IMAGE_CHECKS)
    for name, cls in RULES.items():
        assert cls.name == name
        assert cls.description and "\n" not in cls.description
    assert len(COCO_CATEGORIES) == 80 and "traffic light" in COCO_CATEGORIES


def test_good_row_passes_every_text_check():
    row = make_row()
    for rule in build_rules(set(TEXT_CHECKS), {}):
        verdict = rule.check(row)
        assert verdict.passed, verdict
        assert verdict.reason is None


# -- length ------------------------------------------------------------------------------------
def test_length():
    ok = Length().check(make_row())
    assert ok.passed and ok.score == len(RATIONALE.split())
    short = Length().check(make_row(rationale="Too short to be a plan.", style="ok"))
    assert not short.passed and short.score == 6
    assert short.reason.startswith("length: rationale has 6 words (min 60)")
    assert "style has 1 word (min 3)" in short.reason
    long = Length(max_words=50).check(make_row())
    assert not long.passed and "(max 50)" in long.reason
    missing = Length().check(make_row(layout=None))
    assert not missing.passed and "layout has 0 words" in missing.reason


# -- facets ------------------------------------------------------------------------------------
def test_facets():
    assert Facets().check(make_row()).score == 1.0
    v = Facets().check(make_row(layout="n/a", style=None, step_by_step="Draw it."))
    assert not v.passed
    assert v.score == pytest.approx(3 / 6)
    assert "3 of 6 missing or trivial" in v.reason
    assert "layout ('n/a')" in v.reason and "style (missing)" in v.reason
    assert "step_by_step (8 chars, min 12)" in v.reason
    for placeholder in ("None", "unknown", "...", "N/A.", "  "):
        assert not Facets().check(make_row(composition=placeholder)).passed


# -- boilerplate -------------------------------------------------------------------------------
def test_boilerplate():
    assert Boilerplate().check(make_row()).score == 0
    v = Boilerplate().check(
        make_row(style="I'm sorry, but as an AI language model I cannot see images.")
    )
    assert not v.passed and v.score == 3
    assert '"I\'m sorry" in style' in v.reason and "(max 0)" in v.reason
    opener = make_row(rationale="This image shows a dog. " + RATIONALE)
    v = Boilerplate().check(opener)
    assert not v.passed and v.score == 1 and "opener 'This image shows'" in v.reason
    assert Boilerplate(forbid_openers=False).check(opener).passed
    assert not Boilerplate().check(make_row(rationale="In this image, a dog sits.")).passed
    v = Boilerplate(extra_phrases=("lorem ipsum",)).check(make_row(layout="Lorem  ipsum dolor"))
    assert not v.passed and "'Lorem  ipsum' in layout" in v.reason
    # ordinary words that contain the keywords do not count
    assert Boilerplate().check(make_row(style="A significant, unstable cantilever.")).passed


# -- repetition --------------------------------------------------------------------------------
def test_repetition():
    v = Repetition().check(make_row())
    assert v.passed and v.score < 0.05
    loop = "the dog sits on the mat " * 10
    v = Repetition().check(make_row(rationale=loop))
    assert not v.passed and v.score > 0.8
    assert v.reason.startswith("repetition: ") and "of 3-grams repeated (max 30%)" in v.reason
    run = RATIONALE + " It is very very very very very bright."
    v = Repetition().check(make_row(rationale=run))
    assert not v.passed and v.score < 0.3
    assert "'very' repeated 5 times in a row (max 4)" in v.reason
    assert Repetition().check(make_row(rationale=None)).score is None


# -- language ----------------------------------------------------------------------------------
GERMAN = (
    "Ein goldener Retriever sitzt auf der linken Seite einer sonnigen Küche und schaut zur "
    "Arbeitsplatte hinauf. Zwei rote Tassen stehen auf einem Holztisch in der Mitte, und aus "
    "beiden steigt leise Dampf auf. Eine Frau in einer blauen Schürze steht rechts."
)


def test_language():
    v = LanguageCheck().check(make_row())
    assert v.passed and v.score > 0.99
    v = LanguageCheck().check(make_row(rationale=GERMAN))
    assert not v.passed and v.score < 0.1
    assert "English confidence" in v.reason and "(min 0.50); detected German" in v.reason
    assert LanguageCheck(expected="de").check(make_row(rationale=GERMAN)).passed
    # a rationale that drifts into another language is seen doing so (head and tail read)
    drift = RATIONALE + " " + GERMAN
    assert not LanguageCheck().check(make_row(rationale=drift)).passed
    assert LanguageCheck().check(make_row(rationale="ok")).score is None
    with pytest.raises(ValueError, match="unknown ISO 639-1 code"):
        LanguageCheck(expected="xx")


# -- caption coverage --------------------------------------------------------------------------
def test_caption_coverage():
    v = CaptionCoverage().check(make_row())
    assert v.passed and v.score >= 0.8
    row = make_row(captions=["A giraffe eats leaves from a tall acacia tree at the zoo."])
    v = CaptionCoverage().check(row)
    assert not v.passed and v.score < 0.5
    assert "caption content words in the rationale (min 50%)" in v.reason
    assert "giraffe" in v.reason and "zoo" in v.reason
    # plurals and inflections match through lemmas; colours, numbers, places do not count
    row = make_row(captions=["Two red mugs on the left."], rationale="A mug sits there.")
    assert CaptionCoverage().check(row).score == 1.0
    assert CaptionCoverage().check(make_row(captions=[])).score is None


# -- counts ------------------------------------------------------------------------------------
def test_count_claims():
    assert count_claims("Two dogs and 3 small cats play with one ball.") == (
        (2, "dog"),
        (3, "cat"),
        (1, "ball"),
    )
    assert count_claims("One of the dogs. A two-story house.") == ()
    assert count_claims("two people and three men") == ((2, "person"), (3, "man"))


def test_counts():
    assert Counts().check(make_row()).score == 1.0
    row = make_row(rationale=RATIONALE.replace("Two red mugs", "Three red mugs"))
    v = Counts().check(row)
    assert not v.passed and v.score == 0.0
    assert "1 of 1 caption counts contradicted: captions 2 mug, rationale 3" in v.reason
    # captions that disagree among themselves accept either count
    row = make_row(captions=["Two dogs on a rug.", "Three dogs on a rug."], rationale="Two dogs.")
    assert Counts().check(row).passed
    # no caption numbers: not applicable
    assert Counts().check(make_row(captions=["A dog in a kitchen."])).score is None


# -- objects mentioned -------------------------------------------------------------------------
def test_objects_mentioned():
    v = ObjectsMentioned().check(make_row())
    assert v.passed and v.score == 1.0  # mugs -> cup, woman -> person, table -> dining table
    objects = make_row()["objects"] + [
        {"category": "traffic light", "bbox": [0, 0, 100, 100], "area": 9000.0},
        {"category": "cell phone", "bbox": [0, 0, 100, 100], "area": 9000.0},
    ]
    v = ObjectsMentioned().check(make_row(objects=objects))
    assert not v.passed and v.score == pytest.approx(4 / 6)
    assert "4 of 6 object categories mentioned" in v.reason
    assert "missing: cell phone, traffic light" in v.reason
    text = RATIONALE + " A phone and two traffic lights."
    assert ObjectsMentioned().check(make_row(objects=objects, rationale=text)).passed
    # tiny instances are not required; rows without objects are not judged
    tiny = objects[:5] + [{"category": "toaster", "bbox": [0, 0, 5, 5], "area": 25.0}]
    assert ObjectsMentioned().check(make_row(objects=tiny)).passed
    assert ObjectsMentioned().check(make_row(objects=[])).score is None
    # non-COCO categories are found by name, extra synonyms accepted
    shapes = [{"category": "circle", "bbox": [0, 0, 100, 100], "area": 9000.0}]
    assert not ObjectsMentioned().check(make_row(objects=shapes)).passed
    row = make_row(objects=shapes, rationale="Two red discs.")
    assert ObjectsMentioned(synonyms={"circle": ["disc"]}).check(row).passed


# -- hallucination -----------------------------------------------------------------------------
def test_hallucination():
    assert Hallucination().check(make_row()).score == 0
    text = RATIONALE + " A cat naps under the table and a bicycle leans on the wall."
    v = Hallucination().check(make_row(rationale=text))
    assert not v.passed and v.score == 2
    assert "2 COCO categories named but not annotated: bicycle, cat (max 0)" in v.reason
    # negations, idioms, colours and verbs are no hallucinations
    safe = (
        RATIONALE + " There are no cats. A bird's-eye view is avoided; an orange glow and"
        " an orange cast fill the room as the light sinks. Hot dog stands? None."
    )
    assert Hallucination().check(make_row(rationale=safe)).passed, Hallucination().check(
        make_row(rationale=safe)
    )
    v = Hallucination().check(make_row(rationale=RATIONALE + " An orange sits on the board."))
    assert not v.passed and "orange" in v.reason
    # broad words ("table", "bag") never count as hallucinations
    row = make_row(
        objects=[o for o in make_row()["objects"] if o["category"] != "dining table"],
        rationale=RATIONALE.replace("dining table", "table"),
    )
    assert Hallucination().check(row).passed
    v = Hallucination().check(make_row(rationale=RATIONALE, objects=row["objects"]))
    assert v.reason == (
        "hallucination: 1 COCO category named but not annotated: dining table (max 0)"
    )
    # rows without COCO objects are not judged
    assert Hallucination().check(make_row(objects=[])).score is None
    shapes = [{"category": "circle", "bbox": [0, 0, 10, 10], "area": 100.0}]
    assert Hallucination().check(make_row(objects=shapes)).score is None


# -- positions ---------------------------------------------------------------------------------
def test_position_claims():
    claims = position_claims(
        "A vase sits to the left of the sofa. A cup in the top right corner of the frame. "
        "She holds it in her left hand. The dog faces to the left. Books on the top shelf."
    )
    assert [(c.text, set(c.horizontal), set(c.vertical)) for c in claims] == [
        ("in the top right", {"right"}, {"top"})
    ]


def test_positions():
    v = Positions().check(make_row())
    assert v.passed and v.score == 1.0
    wrong = RATIONALE.replace("sits on the left", "sits on the right").replace(
        "stands on the right", "stands on the left"
    )
    row = make_row(rationale=wrong.replace("A woman in a blue apron", "A woman"))
    v = Positions().check(row)
    assert not v.passed and v.score == pytest.approx(1 / 3)
    assert "2 of 3 position claims disagree with the boxes" in v.reason
    assert "dog 'on the right' but box at middle left" in v.reason
    assert "(min 50% agree)" in v.reason
    # a claim about an unannotated thing is not checked
    row = make_row(rationale="A lamp on the right beside the dog. " * 3)
    assert Positions().check(row).score is None
    # several instances: agrees if any instance matches
    objects = make_row()["objects"] + [{"category": "dog", "bbox": [500, 10, 60, 60]}]
    row = make_row(rationale="A dog in the top right corner. " * 3, objects=objects)
    assert Positions().check(row).passed
    assert Positions().check(make_row(width=None)).score is None


# -- variants ----------------------------------------------------------------------------------
def test_variants():
    assert Variants().check(make_row()).score == 1.0
    row = make_row(
        paraphrases=[RATIONALE, "  a dog waits in a SUNNY kitchen while a woman slices bread"],
        varied_captions=[RATIONALE[:-5]],
        tags=[],
    )
    v = Variants().check(row)
    assert not v.passed
    assert v.score == pytest.approx(1 - 4 / 8)
    assert "4 of 8 variants bad" in v.reason
    assert "paraphrases[0] copies the rationale" in v.reason
    assert "paraphrases[1] duplicate" in v.reason
    assert "varied_captions[0] copies the rationale" in v.reason
    assert "tags missing" in v.reason
    assert Variants(min_fraction=0.4).check(row).passed


# -- image checks ------------------------------------------------------------------------------
def test_image_size_and_aspect_ratio():
    assert ImageSize().check(make_row()).score == 480
    v = ImageSize().check(make_row(width=320, height=240))
    assert not v.passed and v.score == 240
    assert v.reason == "image_size: shorter side 240 px (320x240; min 256 px)"
    assert ImageSize().check(make_row(width=None)).score is None
    assert AspectRatio().check(make_row()).score == pytest.approx(4 / 3)
    v = AspectRatio().check(make_row(width=2000, height=500))
    assert not v.passed and v.score == 4.0
    assert v.reason == "aspect_ratio: aspect ratio 4.00 (2000x500; max 3.00)"


def _png(draw_text: bool) -> bytes:
    img = Image.new("RGB", (640, 480), "white")
    if draw_text:
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=90)
        draw.text((20, 60), "BIG SALE", fill="black", font=font)
        draw.text((20, 200), "50% OFF", fill="black", font=font)
        draw.text((20, 340), "TODAY", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_text_in_image():
    pytest.importorskip("rapidocr_onnxruntime")
    rule = TextInImage()
    v = rule.check(make_row(image={"bytes": _png(True), "path": None}))
    assert not v.passed and v.score > 0.2
    assert v.reason.startswith("text_in_image: text covers ") and "(max 20%)" in v.reason
    v = rule.check(make_row(image={"bytes": _png(False), "path": None}))
    assert v.passed and v.score == 0.0
    assert rule.check(make_row(image=None)).score is None


def test_text_in_image_without_rapidocr(monkeypatch):
    monkeypatch.setattr(image_checks, "ocr_available", lambda: False)
    with pytest.raises(image_checks.OCRUnavailableError, match="pip install rapidocr-onnxruntime"):
        TextInImage()


def test_covered_fraction_is_the_union_of_boxes():
    box = [(0, 0), (50, 0), (50, 50), (0, 50)]
    assert image_checks.covered_fraction([box, box], 100, 100) == pytest.approx(0.25, abs=0.02)


# -- registry and presets ----------------------------------------------------------------------
def test_build_rules_defaults_and_overrides():
    rules = build_rules(None, {})
    names = [r.name for r in rules]
    assert names == [n for n in RULES if n != "text_in_image"]
    (length,) = build_rules({"length"}, {"length": {"min_words": "10", "facets": "layout,style"}})
    assert length.min_words == 10 and length.facets == ("layout", "style")
    (b,) = build_rules(["boilerplate"], {"boilerplate": {"forbid_openers": "false"}})
    assert b.forbid_openers is False
    assert rule_params("repetition") == {"n": 3, "max_ratio": 0.3, "run_length": 5}


def test_build_rules_errors():
    with pytest.raises(ValueError, match="unknown rule 'lenght'"):
        build_rules({"lenght"}, {})
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        build_rules({"length"}, {"nope": {}})
    with pytest.raises(ValueError, match="rule 'length' has no parameter 'min_wrds'"):
        build_rules({"length"}, {"length": {"min_wrds": 3}})
    with pytest.raises(ValueError, match="parameter 'min_words' must be an integer, got 'many'"):
        build_rules({"length"}, {"length": {"min_words": "many"}})


@pytest.mark.parametrize("preset", ["lenient", "default", "strict"])
def test_presets_build(preset):
    spec = PRESETS[preset]
    rules = build_rules(set(spec["enabled"]), spec["params"])
    assert {r.name for r in rules} == set(spec["enabled"])


def test_presets_order_from_lenient_to_strict():
    lenient, default, strict = (
        set(PRESETS[p]["enabled"]) for p in ("lenient", "default", "strict")
    )
    assert lenient < default < strict
    assert "text_in_image" in strict and "text_in_image" not in default
    short = make_row(rationale=" ".join(RATIONALE.split()[:45]))

    def passes(preset):
        spec = PRESETS[preset]
        (rule,) = build_rules({"length"}, {"length": spec["params"].get("length", {})})
        return rule.check(short).passed

    assert passes("lenient") and not passes("default") and not passes("strict")
