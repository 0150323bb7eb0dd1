"""Rule checks on the text of a generated row, the registry of every rule and the presets.

Each check is a small dataclass: ``name`` (as in :data:`rationale_forge.schema.TEXT_CHECKS`),
a one-line ``description``, its parameters as fields with defaults, and ``check(row)``
returning a :class:`~rationale_forge.filters.base.Verdict`. A check that does not apply to a
row (no captions, no COCO objects, ...) passes with ``score=None``.

The checks are plain heuristics without a POS tagger, tuned for speed (all text checks
together, language identification included, run at ~2,000 rows per second on one core for
150-word rationales): words come from one precompiled regex, lemmas from ``simplemma``
(cached per word), and the per-text analyses are cached so that the checks of one row share
them. Language identification uses ``lingua`` with a small detector built once, lazily.

Choices worth knowing (details in each class):

* Object mentions are found by matching lemmatised category names and synonyms, longest
  phrase first ("hot dog" is not a dog, "teddy bear" not a bear), skipping mentions negated
  just before ("no people", "without a car") and idioms ("bird's-eye view", "bus stop").
* Ambiguous COCO names count only in a noun context: ``orange``/``remote`` only as
  "oranges" or "an orange" followed by a pause or a function word (so "an orange cat" is the
  colour); ``tie``/``sink``/``train``/``book``/``bear`` only right after a determiner, number
  or adjective ("a tie", "the kitchen sink"), never as verbs ("the sun sinks").
* ``person`` is also found as man, woman, people, child, player, skier, ... Broad synonyms
  (table for "dining table", bag for "handbag", screen for "tv") only count towards
  ``objects_mentioned``, never as a hallucination.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import simplemma

from ..prompting import coarse_position
from ..rationale import LIST_FIELDS, TEXT_FIELDS
from .base import Verdict, fail, ok
from .image_checks import IMAGE_RULES, AspectRatio, ImageSize, TextInImage

# -- words -----------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"[^\W_]+|[.!?;:,]")
_ASCII_TOKEN_RE = re.compile(r"[a-z0-9]+|[.!?;:,]")  # the same on ASCII text, faster
_PUNCT = frozenset(".!?;:,")
#: Entries of the per-text caches: the checks of one row share its tokens, so a few hundred
#: suffice; a larger cache would only hold old rationales (memory that grows with the run).
TEXT_CACHE = 512
_SENTENCE_END = frozenset(".!?;")


@functools.lru_cache(maxsize=TEXT_CACHE)
def tokens(text: str) -> tuple[str, ...]:
    """Lower-cased word, number and punctuation tokens (hyphens and apostrophes split)."""
    low = text.lower()
    return tuple((_ASCII_TOKEN_RE if low.isascii() else _TOKEN_RE).findall(low))


@functools.lru_cache(maxsize=TEXT_CACHE)
def words(text: str) -> tuple[str, ...]:
    """The word and number tokens of ``text``, lower-cased."""
    return tuple(itertools.filterfalse(_PUNCT.__contains__, tokens(text)))


@functools.lru_cache(maxsize=1 << 17)
def _word_forms(word: str) -> tuple[str, str]:
    lem = simplemma.lemmatize(word, lang="en").lower()
    return lem, (word if word.endswith(("ing", "ed")) else lem)


def lemma(word: str) -> str:
    """English lemma of a lower-cased word (simplemma's dictionary; cached)."""
    return _word_forms(word)[0]


def noun_form(word: str) -> str:
    """The lemma, except for -ing/-ed forms (kept as they are, so "sinking" or "booked" never
    read as the nouns sink and book)."""
    return _word_forms(word)[1]


_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


@functools.lru_cache(maxsize=TEXT_CACHE)
def _text_forms(text: str) -> tuple[tuple[str, ...], frozenset[str]]:
    toks = tokens(text)
    pairs = list(map(_word_forms, toks))
    return tuple(map(_SECOND, pairs)), frozenset(toks).union(map(_FIRST, pairs))


def lemma_set(text: str) -> frozenset[str]:
    """Every word of ``text`` and its lemma (punctuation tokens too, harmlessly)."""
    return _text_forms(text)[1]


def noun_forms(text: str) -> tuple[str, ...]:
    """``noun_form`` of every token of ``text`` (punctuation kept), aligned with tokens()."""
    return _text_forms(text)[0]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value if v is not None)
    return str(value)


def _word_count(text: str) -> int:
    return len(text.split())


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _n_words(n: int) -> str:
    return _count(n, "word", "words")


def _short(items: Iterable[str], limit: int = 6) -> str:
    items = list(items)
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit})" if len(items) > limit else "")


def _norm_variant(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .,;:!?\"'")


STOPWORDS = frozenset(
    """a about above across after again against all almost along also although am among an
    and another any anything are around as at away back be because been before being below
    beneath beside besides between both but by can could did do does doing down during each
    either else even ever every few for from further had has have having he her here hers
    herself him himself his how however i if in inside into is it its itself just least less
    like lot lots many may me might more most much must my myself near nearby neither next no
    nor not of off on once one only onto or other others our ours out outside over own per
    quite rather same several she should since so some something such than that the their
    theirs them themselves then there these they this those though through throughout thus
    to together too toward towards under underneath until up upon us very via was we well
    were what when where whether which while who whom whose why will with within without
    would yet you your yours s t d ll m re ve""".split()
)
#: Words that say what a picture is rather than what is in it.
META_WORDS = frozenset(
    """image images picture pictures photo photos photograph photographs shot view scene
    snapshot closeup close frame depicts depicting shows showing seen visible appears
    there""".split()
)
GENERIC_WORDS = frozenset(
    """large small big little tiny huge some various different couple group bunch kind type
    thing things something area way full other another very""".split()
)
COLOURS = frozenset(
    """red green blue yellow orange purple pink brown black white gray grey silver gold golden
    beige tan cream violet teal turquoise maroon navy colorful colourful colored coloured
    dark light bright pale""".split()
)
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        """zero one two three four five six seven eight nine ten eleven twelve thirteen
        fourteen fifteen sixteen seventeen eighteen nineteen twenty""".split()
    )
}
SPATIAL_WORDS = frozenset(
    """left right top bottom center centre middle central upper lower front back behind
    beside near next above below under over background foreground side sides corner edge
    half distance far close""".split()
)
_COVERAGE_SKIP = STOPWORDS | META_WORDS | GENERIC_WORDS | COLOURS | SPATIAL_WORDS
_COVERAGE_SKIP = _COVERAGE_SKIP | frozenset(NUMBER_WORDS)

# -- length ----------------------------------------------------------------------------------


@dataclass
class Length:
    """The rationale has ``min_words``..``max_words`` words; each of the facets (layout,
    style, composition) ``facet_min_words``..``facet_max_words`` (a missing facet has 0)."""

    name: ClassVar[str] = "length"
    description: ClassVar[str] = "rationale and facet word counts within limits"
    default_enabled: ClassVar[bool] = True

    min_words: int = 60
    max_words: int = 320
    facet_min_words: int = 3
    facet_max_words: int = 120
    facets: tuple[str, ...] = ("layout", "style", "composition")

    def check(self, row: dict[str, Any]) -> Verdict:
        n = _word_count(_text(row.get("rationale")))
        problems = []
        if n < self.min_words:
            problems.append(f"rationale has {_n_words(n)} (min {self.min_words})")
        elif n > self.max_words:
            problems.append(f"rationale has {_n_words(n)} (max {self.max_words})")
        for facet in self.facets:
            k = _word_count(_text(row.get(facet)))
            if k < self.facet_min_words:
                problems.append(f"{facet} has {_n_words(k)} (min {self.facet_min_words})")
            elif k > self.facet_max_words:
                problems.append(f"{facet} has {_n_words(k)} (max {self.facet_max_words})")
        if problems:
            return fail(self.name, n, "; ".join(problems))
        return ok(self.name, n)


# -- facets ----------------------------------------------------------------------------------
#: What a facet holds when the model had nothing to say (compared without punctuation).
PLACEHOLDERS = frozenset(
    (
        "|n a|na|none|null|nil|unknown|not applicable|not available|not specified|unspecified|"
        "tbd|todo|nothing|empty|placeholder|no description|same as above|see above|"
        "see rationale|see the rationale"
    ).split("|")
)
_NON_WORD_RE = re.compile(r"[\W_]+")


def _placeholder(text: str) -> bool:
    return _NON_WORD_RE.sub(" ", text.lower()).strip() in PLACEHOLDERS


@dataclass
class Facets:
    """Every required facet is there and non-trivial: at least ``min_chars`` characters and
    not a placeholder ("n/a", "none", "unknown", "...")."""

    name: ClassVar[str] = "facets"
    description: ClassVar[str] = "required facets present, not placeholders, >= min_chars"
    default_enabled: ClassVar[bool] = True

    required: tuple[str, ...] = (
        "rationale",
        "layout",
        "style",
        "composition",
        "short_caption",
        "step_by_step",
    )
    min_chars: int = 12

    def check(self, row: dict[str, Any]) -> Verdict:
        bad = []
        for facet in self.required:
            text = _text(row.get(facet)).strip()
            if not text:
                bad.append(f"{facet} (missing)")
            elif len(text) <= 40 and _placeholder(text):
                bad.append(f"{facet} ({text[:20]!r})")
            elif len(text) < self.min_chars:
                bad.append(f"{facet} ({len(text)} chars, min {self.min_chars})")
        total = len(self.required)
        score = (total - len(bad)) / total if total else 1.0
        if bad:
            return fail(
                self.name, score, f"{len(bad)} of {total} missing or trivial: {_short(bad)}"
            )
        return ok(self.name, score)


# -- boilerplate -----------------------------------------------------------------------------
_APOS = "['\u2019]"
REFUSAL_PATTERNS = (
    rf"\bI{_APOS}?m sorry\b",
    r"\bI am sorry\b",
    r"\bI apologi[sz]e\b",
    r"\bas an? (?:AI|artificial intelligence|(?:large )?language model)"
    r"(?: (?:large )?language model)?\b",
    r"\b(?:large )?language model\b",
    r"\bAI (?:assistant|model)\b",
    r"\bI cannot\b",
    r"\bI can not\b",
    rf"\bI can{_APOS}?t\b",
    rf"\bI{_APOS}?m (?:unable|not able)\b",
    r"\bI am (?:unable|not able)\b",
    r"\bI do not have the ability\b",
)
#: Lower-case substrings without which no REFUSAL_PATTERNS match (a cheap pre-filter).
REFUSAL_KEYS = tuple(
    (
        "sorry|apologi|language model|as an ai|as a ai|as an artificial|as a artificial|"
        "ai assistant|ai model|cannot|can not|can't|can\u2019t|cant|unable|not able|ability"
    ).split("|")
)
_PICTURE = r"(?:image|picture|photo|photograph|illustration|artwork|painting)"
OPENER_PATTERNS = (
    rf"(?:in|within) (?:this|the) {_PICTURE}\b",
    rf"(?:this|the) {_PICTURE},? (?:shows|depicts|features|captures|presents|displays|"
    r"contains|portrays|showcases|illustrates|is of)\b",
    rf"(?:this|it) is an? {_PICTURE} (?:of|showing|that)\b",
    r"here (?:is|we see|we have)\b",
    rf"(?:the|this) {_PICTURE} you (?:provided|shared|sent)\b",
)


@dataclass
class Boilerplate:
    """No refusals or assistant boilerplate anywhere in the rationale and its facets ("I'm
    sorry", "As an AI", "I cannot", "language model"), and, with ``forbid_openers``, no
    describe-the-photo opener at the start of the rationale ("This image shows", "In this
    image"): a rationale is a plan to draw, not a description. Score: number of hits."""

    name: ClassVar[str] = "boilerplate"
    description: ClassVar[str] = "no refusals/assistant boilerplate, no 'This image shows' opener"
    default_enabled: ClassVar[bool] = True

    forbid_openers: bool = True
    max_hits: int = 0
    extra_phrases: tuple[str, ...] = ()  # more phrases to flag (plain text, case-insensitive)
    fields: tuple[str, ...] = TEXT_FIELDS + LIST_FIELDS

    _refusal: re.Pattern = field(init=False, repr=False)
    _opener: re.Pattern = field(init=False, repr=False)
    _keys: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        patterns = list(REFUSAL_PATTERNS)
        patterns += [
            r"\b" + re.escape(p).replace(r"\ ", r"\s+") + r"\b" for p in self.extra_phrases
        ]
        self._refusal = re.compile("|".join(patterns), re.I)
        self._keys = REFUSAL_KEYS + tuple(
            p.lower().split()[0] for p in self.extra_phrases if p.split()
        )
        self._opener = re.compile(r"^[\s\"'*#>_-]*(?:" + "|".join(OPENER_PATTERNS) + ")", re.I)

    def check(self, row: dict[str, Any]) -> Verdict:
        hits = []
        texts = [(name, _text(row.get(name))) for name in self.fields]
        low = "\n".join(t for _, t in texts).lower()
        if any(k in low for k in self._keys):
            for name, text in texts:
                hits += [f"{m.group(0)!r} in {name}" for m in self._refusal.finditer(text)]
        if self.forbid_openers:
            m = self._opener.match(_text(row.get("rationale")))
            if m:
                hits.append(f"opener {m.group(0).strip(' *#>_-')!r}")
        if len(hits) > self.max_hits:
            return fail(
                self.name, len(hits), f"{len(hits)} hits: {_short(hits, 4)} (max {self.max_hits})"
            )
        return ok(self.name, len(hits))


# -- repetition ------------------------------------------------------------------------------


@dataclass
class Repetition:
    """Degenerate repetition in the rationale: the share of word ``n``-grams that repeat an
    earlier one (1 - distinct/total) is at most ``max_ratio``, and no word is repeated
    ``run_length`` or more times in a row ("very very very very very")."""

    name: ClassVar[str] = "repetition"
    description: ClassVar[str] = "repeated n-gram share at most max_ratio; no word run"
    default_enabled: ClassVar[bool] = True

    n: int = 3
    max_ratio: float = 0.3
    run_length: int = 5

    def check(self, row: dict[str, Any]) -> Verdict:
        text = _text(row.get("rationale"))
        ws = words(text)
        if not ws:
            return ok(self.name)
        n = self.n
        total = len(ws) - n + 1
        if total > 0:
            distinct = len(set(zip(*(ws[i:] for i in range(n)), strict=False)))
            ratio = 1 - distinct / total
        else:
            ratio = 0.0
        problems = []
        if ratio > self.max_ratio:
            problems.append(f"{ratio:.0%} of {n}-grams repeated (max {self.max_ratio:.0%})")
        best, best_word = 1, ws[0]
        if any(map(operator.eq, ws, ws[1:])):  # some word repeats right away: find the run
            run = 1
            for prev, cur in zip(ws, ws[1:], strict=False):
                run = run + 1 if cur == prev else 1
                if run > best:
                    best, best_word = run, cur
        if best >= self.run_length:
            problems.append(
                f"{best_word!r} repeated {best} times in a row (max {self.run_length - 1})"
            )
        if problems:
            return fail(self.name, ratio, "; ".join(problems))
        return ok(self.name, ratio)


# -- language --------------------------------------------------------------------------------
DETECTOR_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "zh", "ja", "ru")
_DETECTORS: dict[tuple[tuple[str, ...], bool], Any] = {}
_DETECTOR_LOCK = threading.Lock()


def _language(code: str) -> Any:
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.strip().upper(), None) if code.isalpha() else None
    if iso is None:
        raise ValueError(f"language: unknown ISO 639-1 code {code!r}")
    return Language.from_iso_code_639_1(iso)


def language_detector(codes: Iterable[str] = DETECTOR_LANGUAGES, low_accuracy: bool = True):
    """A lingua detector for these languages, built once per process (thread-safe; lingua
    loads each language's models on first use, and the detector is safe to share)."""
    key = (tuple(sorted({c.lower() for c in codes})), low_accuracy)
    detector = _DETECTORS.get(key)
    if detector is None:
        with _DETECTOR_LOCK:
            detector = _DETECTORS.get(key)
            if detector is None:
                from lingua import LanguageDetectorBuilder

                builder = LanguageDetectorBuilder.from_languages(*map(_language, key[0]))
                if low_accuracy:
                    builder = builder.with_low_accuracy_mode()
                detector = builder.build()
                _DETECTORS[key] = detector
    return detector


def _sample(text: str, max_chars: int) -> str:
    """``text`` itself, or its first and last ``max_chars / 2`` characters (cut at spaces),
    so a rationale that drifts into another language is still seen doing so."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    head_end = text.rfind(" ", 0, half)
    tail_start = text.find(" ", len(text) - half)
    head = text[: head_end if head_end > half // 2 else half]
    tail = text[tail_start + 1 :] if 0 <= tail_start < len(text) - half // 2 else text[-half:]
    return f"{head} {tail}"


@dataclass
class LanguageCheck:
    """The rationale is in the ``expected`` language with lingua's confidence at least
    ``min_confidence`` among ``languages``.

    Only ``max_chars`` characters are read, half from the start and half from the end:
    plenty for lingua (on 150-word English rationales the lowest of 1,500 scores is 0.9997
    at 160 characters, while German, French, Spanish or Dutch paragraphs score 0.00) and
    fast (~0.6 us a character). ``low_accuracy`` uses lingua's trigram models only; on texts of
    more than ~120 letters lingua's high-accuracy mode uses nothing else, so scores are the
    same there, while a short text no longer makes lingua load every n-gram model (the
    detector stays at ~20 MiB instead of ~190 MiB) nor take ~1 ms. Set it to False for
    lingua's better guesses on texts of a few words."""

    name: ClassVar[str] = "language"
    description: ClassVar[str] = "rationale in the expected language (lingua confidence)"
    default_enabled: ClassVar[bool] = True

    expected: str = "en"
    min_confidence: float = 0.5
    languages: tuple[str, ...] = DETECTOR_LANGUAGES
    max_chars: int = 160
    min_chars: int = 20  # shorter texts are not judged
    low_accuracy: bool = True  # trigram models only: see the class notes

    _codes: tuple[str, ...] = field(init=False, repr=False)
    _expected: Any = field(init=False, repr=False)
    _detector: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._codes = tuple(sorted({*(c.lower() for c in self.languages), self.expected.lower()}))
        self._expected = _language(self.expected)
        for code in self._codes:
            _language(code)

    def check(self, row: dict[str, Any]) -> Verdict:
        text = _text(row.get("rationale")).strip()
        if len(text) < self.min_chars:
            return ok(self.name)
        text = _sample(text, self.max_chars)
        detector = self._detector
        if detector is None:  # built on first use; a race only builds the same one twice
            detector = self._detector = language_detector(self._codes, self.low_accuracy)
        confidence = detector.compute_language_confidence(text, self._expected)
        if confidence < self.min_confidence:
            found = detector.detect_language_of(text)
            seen = found.name.capitalize() if found is not None else "unknown"
            return fail(
                self.name,
                confidence,
                f"{self._expected.name.capitalize()} confidence {confidence:.2f} "
                f"(min {self.min_confidence:.2f}); detected {seen}",
            )
        return ok(self.name, confidence)


# -- caption coverage ------------------------------------------------------------------------


@functools.lru_cache(maxsize=TEXT_CACHE)
def content_lemmas(text: str) -> frozenset[str]:
    """Lemmas of the content words of ``text``: no stopwords, picture words, colours,
    numbers or spatial words (a stand-in for 'nouns and verbs' without a POS tagger)."""
    ws = [w for w in words(text) if w not in _COVERAGE_SKIP and len(w) > 1 and not w.isdigit()]
    return frozenset(map(lemma, ws)) - _COVERAGE_SKIP


@dataclass
class CaptionCoverage:
    """The captions' content words appear in the rationale: of the union of the captions'
    content lemmas, at least ``min_fraction`` are among the rationale's words or lemmas."""

    name: ClassVar[str] = "caption_coverage"
    description: ClassVar[str] = "share of the captions' content words found in the rationale"
    default_enabled: ClassVar[bool] = True

    min_fraction: float = 0.5

    def check(self, row: dict[str, Any]) -> Verdict:
        captions = [c for c in row.get("captions") or [] if c]
        wanted: set[str] = set()
        for caption in captions:
            wanted |= content_lemmas(caption)
        if not wanted:
            return ok(self.name)
        have = lemma_set(_text(row.get("rationale")))
        missing = sorted(w for w in wanted if w not in have)
        score = 1 - len(missing) / len(wanted)
        if score < self.min_fraction:
            return fail(
                self.name,
                score,
                f"{score:.0%} of {len(wanted)} caption content words in the rationale "
                f"(min {self.min_fraction:.0%}); missing: {_short(missing, 8)}",
            )
        return ok(self.name, score)


# -- counts ----------------------------------------------------------------------------------
#: Plural nouns that look singular to a lemmatiser.
INVARIANT_PLURALS = frozenset(
    "people sheep deer fish cattle skis scissors glasses pants jeans shorts police".split()
)
_NOUN_ALIASES = {"people": "person", "persons": "person", "folk": "person", "folks": "person"}
_MODIFIERS = (
    COLOURS
    | GENERIC_WORDS
    | frozenset(
        """tall short long old young new wooden metal plastic striped adult baby little""".split()
    )
)


#: Tokens that state a count: number words and the numbers 1-99.
_NUMBER_TOKENS: dict[str, int] = {
    **{w: n for w, n in NUMBER_WORDS.items() if n},
    **{str(n): n for n in range(1, 100)},
}


@functools.lru_cache(maxsize=TEXT_CACHE)
def count_claims(text: str) -> tuple[tuple[int, str], ...]:
    """(count, noun lemma) pairs such as "two dogs" -> (2, "dog"), "3 small cats" ->
    (3, "cat"). For counts above one the noun is the first plural among the next three
    words; for one, the first word that is no modifier. Stops at punctuation and function
    words ("one of the dogs" makes no claim)."""
    toks = tokens(text)
    out = []
    for i in [i for i, t in enumerate(toks) if t in _NUMBER_TOKENS]:
        n = _NUMBER_TOKENS[toks[i]]
        for nxt in toks[i + 1 : i + 4]:
            if nxt in _PUNCT or nxt in STOPWORDS or nxt in _NUMBER_TOKENS:
                break
            lem = lemma(nxt)
            if n == 1:
                if nxt in _MODIFIERS:
                    continue
                if lem == nxt and nxt not in INVARIANT_PLURALS:
                    out.append((n, _NOUN_ALIASES.get(lem, lem)))
                break
            if nxt in INVARIANT_PLURALS or (lem != nxt and nxt not in _MODIFIERS):
                out.append((n, _NOUN_ALIASES.get(nxt, _NOUN_ALIASES.get(lem, lem))))
                break
    return tuple(out)


@dataclass
class Counts:
    """Numbers in the captions ("two dogs", "3 cats") are not contradicted by the
    rationale: for each (count, noun) claim of the captions, the rationale either states no
    count for that noun or one of the counts the captions give for it (captions that
    disagree among themselves thus accept either). Score: share of caption claims that
    agree or are not contradicted."""

    name: ClassVar[str] = "counts"
    description: ClassVar[str] = "counts in the captions not contradicted by the rationale"
    default_enabled: ClassVar[bool] = True

    min_fraction: float = 1.0

    def check(self, row: dict[str, Any]) -> Verdict:
        claims: set[tuple[int, str]] = set()
        for caption in row.get("captions") or []:
            if caption:
                claims.update(count_claims(caption))
        if not claims:
            return ok(self.name)
        by_noun: dict[str, set[int]] = {}
        for n, noun in claims:
            by_noun.setdefault(noun, set()).add(n)
        stated: dict[str, set[int]] = {}
        for n, noun in count_claims(_text(row.get("rationale"))):
            stated.setdefault(noun, set()).add(n)
        bad = []
        for n, noun in sorted(claims, key=lambda c: (c[1], c[0])):
            said = stated.get(noun)
            if said and not said & by_noun[noun]:
                bad.append(f"captions {n} {noun}, rationale {'/'.join(map(str, sorted(said)))}")
        score = 1 - len(bad) / len(claims)
        if score < self.min_fraction:
            return fail(
                self.name,
                score,
                f"{len(bad)} of {len(claims)} caption counts contradicted: {_short(bad, 4)} "
                f"(min {self.min_fraction:.0%} agree)",
            )
        return ok(self.name, score)


# -- objects: COCO vocabulary and mention matching -------------------------------------------
#: The 80 COCO object categories (instances annotations, 2014/2017), in id order.
COCO_CATEGORIES: tuple[str, ...] = tuple(
    (
        "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,"
        "fire hydrant,stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,"
        "bear,zebra,giraffe,backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,"
        "sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,tennis racket,"
        "bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,"
        "carrot,hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,"
        "laptop,mouse,remote,keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,"
        "book,clock,vase,scissors,teddy bear,hair drier,toothbrush"
    ).split(",")
)
assert len(COCO_CATEGORIES) == 80
_COCO_SET = frozenset(COCO_CATEGORIES)

#: Other words for a category, counted both as a mention and, when the category is not
#: annotated, as a hallucination.
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "people man woman boy girl child kid guy lady gentleman pedestrian player skier "
        "surfer skateboarder snowboarder cyclist rider tourist spectator athlete toddler "
        "teenager"
    ).split(),
    "bicycle": ("bike",),
    "motorcycle": ("motorbike", "motor bike"),
    "airplane": ("aeroplane", "airliner", "jetliner", "aircraft"),
    "train": ("locomotive",),
    "truck": ("lorry",),
    "boat": ("ship", "sailboat", "canoe", "kayak", "yacht", "ferry"),
    "traffic light": ("traffic signal", "stoplight"),
    "fire hydrant": ("hydrant",),
    "bird": ("pigeon", "seagull", "gull", "duck", "goose", "parrot", "swan", "sparrow"),
    "cat": ("kitten",),
    "dog": ("puppy",),
    "horse": ("pony", "foal"),
    "sheep": ("lamb",),
    "cow": ("cattle",),
    "backpack": ("rucksack",),
    "umbrella": ("parasol",),
    "handbag": ("purse",),
    "tie": ("necktie",),
    "suitcase": ("luggage",),
    "frisbee": ("flying disc",),
    "sports ball": ("football", "soccer ball", "tennis ball", "basketball", "volleyball"),
    "baseball glove": ("mitt",),
    "tennis racket": ("racket", "racquet"),
    "wine glass": ("wineglass",),
    "cup": ("mug",),
    "orange": ("tangerine", "mandarin"),
    "hot dog": ("hotdog",),
    "donut": ("doughnut",),
    "couch": ("sofa",),
    "potted plant": ("houseplant", "pot plant"),
    "tv": ("television", "tvs"),
    "remote": ("remote control",),
    "cell phone": ("phone", "cellphone", "smartphone", "mobile phone"),
    "refrigerator": ("fridge",),
    "teddy bear": ("teddy",),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
}
#: Broad words that count as a mention of an annotated category but never as a
#: hallucination ("a table" need not be a COCO "dining table").
COCO_RECALL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "dining table": ("table", "desk"),
    "airplane": ("plane", "jet"),  # "picture plane", "a jet of water"
    "sports ball": ("ball",),  # "a ball of yarn"
    "person": ("crowd", "figure", "someone"),  # "a crowd of pigeons"
    "potted plant": ("plant", "planter"),
    "wine glass": ("glass",),
    "handbag": ("bag",),
    "backpack": ("bag",),
    "suitcase": ("bag",),
    "stop sign": ("sign",),
    "parking meter": ("meter",),
    "baseball bat": ("bat",),
    "baseball glove": ("glove",),
    "tv": ("screen", "monitor"),
    "laptop": ("computer", "notebook"),
    "remote": ("controller",),
    "car": ("taxi", "cab", "van", "suv", "jeep", "vehicle"),
    "truck": ("van", "pickup", "vehicle"),
    "bus": ("vehicle",),
    "teddy bear": ("stuffed animal", "plush", "toy"),
    "sandwich": ("burger", "sub", "panini", "wrap"),
    "chair": ("seat", "stool", "armchair"),
    "cow": ("bull", "ox", "calf"),
    "bird": ("chicken", "hen"),
    "oven": ("stove",),
    "sink": ("basin",),
    "bowl": ("dish",),
}
#: Phrases that contain a category word but name something else; matched first and skipped.
IGNORED_PHRASES = tuple(
    (
        "bird s eye|bird eye|man made|bus stop|bus station|bus shelter|bus lane|"
        "train station|train track|train platform|toilet paper|pizza box|pizza cutter|"
        "cake stand|flower bed|river bed|sea bed|tie dye|oven mitt|ski slope|ski resort|"
        "ski lift|chair lift|zebra crossing|zebra print|zebra striped|cat eye|orange juice|"
        "pony tail|goose bump|hot dog stand|hot dog cart|apple juice|bag of chip"
    ).split("|")
)
_NEGATIONS = frozenset(
    "no not without nor never none neither absent absence lack lacks lacking devoid nobody".split()
)
_DETERMINERS = frozenset(
    """a an the this that these those its his her their our my your one two three four five
    six seven eight nine ten several some many each every another other""".split()
)
#: Category names that are also common verbs: counted only after a determiner, number or
#: modifier ("a tie", "the kitchen sink", "a passenger train").
_VERBISH = frozenset("tie sink train book bear".split())
#: Category names that are also adjectives: counted only as "oranges", or "an orange"
#: followed by punctuation or a function word.
_ADJECTIVISH = frozenset("orange remote".split())
#: Words that may stand before a verb-like category name ("a white sink"); colours that are
#: also nouns ("the light sinks") are left out.
_VERBISH_MODIFIERS = (
    _MODIFIERS - frozenset("light dark bright pale gold silver cream".split())
) | frozenset(
    """kitchen bathroom passenger freight steam commuter bow neck silk grizzly polar brown
    black white toy stuffed open closed hardcover paperback double stainless porcelain
    ceramic marble""".split()
)


class Mention(NamedTuple):
    start: int  # token span of the mention in tokens(text)
    end: int
    category: str
    clear: bool  # False for an ambiguous word outside a noun context ("an orange cat")
    broad: bool  # found through a broad synonym ("table" for "dining table")


def _negated(toks: tuple[str, ...], i: int) -> bool:
    for j in range(i - 1, max(-1, i - 4), -1):
        t = toks[j]
        if t in _PUNCT:
            return False
        if t in _NEGATIONS:
            return True
    return False


def _clear(toks: tuple[str, ...], i: int, key: tuple[str, ...]) -> bool:
    if len(key) != 1:
        return True
    word = key[0]
    prev = toks[i - 1] if i > 0 else "."
    if word in _VERBISH:
        return prev in _DETERMINERS or prev in _VERBISH_MODIFIERS or prev in _NUMBER_TOKENS
    if word in _ADJECTIVISH:
        if toks[i] != word:  # the plural: "oranges", "remotes"
            return True
        nxt = toks[i + 1] if i + 1 < len(toks) else "."
        return prev in _DETERMINERS and (
            nxt in _PUNCT or nxt in _PLACE_WORDS or (nxt in STOPWORDS and nxt not in ("and", "or"))
        )
    return True


class PhraseMatcher:
    """Finds category mentions in a text. Each phrase (compared by ``noun_form``) maps to
    its categories, each flagged broad or not; the longest phrase at a position wins and
    consumes its tokens; phrases mapped to no category (idioms) are consumed and dropped;
    mentions negated in the three tokens before ("no dogs", "without a car") are dropped.
    Results are cached per text."""

    def __init__(self, phrases: Iterable[tuple[str, Iterable[str], bool]]):
        merged: dict[tuple[str, ...], dict[str, bool]] = {}
        for phrase, categories, broad in phrases:
            key = tuple(noun_form(t) for t in tokens(phrase) if t not in _PUNCT)
            if not key:
                continue
            entry = merged.setdefault(key, {})
            for category in categories:
                entry[category] = entry.get(category, True) and broad
        table: dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, bool], ...]]]] = {}
        for key, cats in merged.items():
            table.setdefault(key[0], []).append((key, tuple(sorted(cats.items()))))
        for entries in table.values():
            entries.sort(key=lambda e: -len(e[0]))
        self._table = table
        self.categories = frozenset(c for cats in merged.values() for c in cats)
        self.find = functools.lru_cache(maxsize=TEXT_CACHE)(self._find)

    def _find(self, text: str) -> tuple[Mention, ...]:
        toks = tokens(text)
        forms = noun_forms(text)
        table = self._table
        out: list[Mention] = []
        after = 0
        for i in [i for i, f in enumerate(forms) if f in table]:
            if i < after:
                continue
            for key, cats in table[forms[i]]:
                k = len(key)
                if k == 1 or forms[i : i + k] == key:
                    after = i + k
                    if cats and not _negated(toks, i):
                        clear = _clear(toks, i, key)
                        out.extend(Mention(i, after, c, clear, broad) for c, broad in cats)
                    break
        return tuple(out)


def _phrases(
    categories: Iterable[str],
    use_synonyms: bool = True,
    extra: dict[str, Iterable[str]] | None = None,
) -> list[tuple[str, tuple[str, ...], bool]]:
    """(phrase, categories, broad) for a matcher: idioms, names, synonyms, extra words."""
    phrases: list[tuple[str, tuple[str, ...], bool]] = [(p, (), False) for p in IGNORED_PHRASES]
    for category in categories:
        phrases.append((category, (category,), False))
        if use_synonyms:
            phrases += [(s, (category,), False) for s in COCO_SYNONYMS.get(category, ())]
            phrases += [(s, (category,), True) for s in COCO_RECALL_SYNONYMS.get(category, ())]
        phrases += [(s, (category,), False) for s in (extra or {}).get(category, ())]
    return phrases


@functools.lru_cache(maxsize=64)
def _matcher(use_synonyms: bool = True, synonyms: tuple = ()) -> PhraseMatcher:
    """The COCO matcher, with or without the built-in synonyms, plus ``synonyms``
    ((category, words) pairs; categories outside COCO welcome)."""
    extra = dict(synonyms)
    return PhraseMatcher(_phrases(dict.fromkeys([*COCO_CATEGORIES, *extra]), use_synonyms, extra))


@functools.lru_cache(maxsize=4096)
def _custom_matcher(categories: frozenset[str]) -> PhraseMatcher:
    return PhraseMatcher(_phrases(categories, use_synonyms=False))


def _synonym_key(synonyms: dict[str, Any] | None) -> tuple:
    return tuple(sorted((k, tuple(v)) for k, v in (synonyms or {}).items()))


def _objects(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in row.get("objects") or [] if o and o.get("category")]


def _mentions(text: str, categories: Iterable[str], matcher: PhraseMatcher) -> tuple[Mention, ...]:
    """Mentions of the row's ``categories``: those ``matcher`` knows through it, any other
    (non-COCO) category by its own name."""
    cats = set(categories)
    found = [m for m in matcher.find(text) if m.category in cats]
    other = frozenset(cats - matcher.categories)
    if other:
        found += _custom_matcher(other).find(text)
    return tuple(found)


def _area(obj: dict[str, Any]) -> float:
    area = obj.get("area")
    if area:
        return float(area)
    bbox = obj.get("bbox") or [0, 0, 0, 0]
    return float(bbox[2]) * float(bbox[3])


@dataclass
class ObjectsMentioned:
    """With COCO objects, each annotated category is mentioned in the rationale (by name,
    plural or synonym; multi-word names like "traffic light" as phrases). Categories whose
    instances together cover less than ``min_area_fraction`` of the image are not required
    (a far-away cup needs no mention). Score: share of the categories mentioned."""

    name: ClassVar[str] = "objects_mentioned"
    description: ClassVar[str] = "share of the annotated object categories named in the rationale"
    default_enabled: ClassVar[bool] = True

    min_fraction: float = 0.75
    min_area_fraction: float = 0.01
    use_synonyms: bool = True
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # category -> extra words

    def check(self, row: dict[str, Any]) -> Verdict:
        objects = _objects(row)
        if not objects:
            return ok(self.name)
        width, height = row.get("width"), row.get("height")
        areas: Counter = Counter()
        for o in objects:
            areas[o["category"]] += _area(o)
        if width and height and self.min_area_fraction > 0:
            limit = self.min_area_fraction * width * height
            wanted = sorted(c for c, a in areas.items() if a >= limit)
        else:
            wanted = sorted(areas)
        if not wanted:
            return ok(self.name)
        matcher = _matcher(self.use_synonyms, _synonym_key(self.synonyms))
        text = _text(row.get("rationale"))
        found = {m.category for m in _mentions(text, wanted, matcher)}
        missing = [c for c in wanted if c not in found]
        score = 1 - len(missing) / len(wanted)
        if score < self.min_fraction:
            return fail(
                self.name,
                score,
                f"{len(wanted) - len(missing)} of {len(wanted)} object categories mentioned "
                f"({score:.0%}, min {self.min_fraction:.0%}); missing: {_short(missing)}",
            )
        return ok(self.name, score)


@dataclass
class Hallucination:
    """A COCO category named in the rationale but not annotated in the row is a
    hallucination. Applies only to rows whose objects use COCO category names (COCO
    annotations are exhaustive for those 80 names). Score: number of hallucinated
    categories. Negated mentions ("no people") and idioms ("bird's-eye view") do not count;
    ambiguous names need a noun context (see the module notes)."""

    name: ClassVar[str] = "hallucination"
    description: ClassVar[str] = "COCO categories named in the rationale but not annotated"
    default_enabled: ClassVar[bool] = True

    max_count: int = 0
    use_synonyms: bool = True
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # category -> extra words

    def check(self, row: dict[str, Any]) -> Verdict:
        objects = _objects(row)
        present = {o["category"] for o in objects}
        if not present & _COCO_SET:
            return ok(self.name)
        matcher = _matcher(self.use_synonyms, _synonym_key(self.synonyms))
        toks = tokens(_text(row.get("rationale")))
        seen: dict[str, str] = {}
        for m in matcher.find(_text(row.get("rationale"))):
            if m.clear and not m.broad and m.category not in present and m.category in _COCO_SET:
                seen.setdefault(m.category, " ".join(toks[m.start : m.end]))
        if len(seen) > self.max_count:
            named = [c if c == w else f"{c} ({w!r})" for c, w in sorted(seen.items())]
            return fail(
                self.name,
                len(seen),
                f"{_count(len(seen), 'COCO category', 'COCO categories')} named but not "
                f"annotated: {_short(named)} "
                f"(max {self.max_count})",
            )
        return ok(self.name, len(seen))


# -- positions -------------------------------------------------------------------------------
_POS_WORDS = frozenset("left right center centre central middle top bottom upper lower".split())
#: Words before "the <position>" that make it a place: prepositions and a few verbs
#: ("occupies the left third").
_POS_PREPS = frozenset(
    "in on at along across near to occupies occupy occupying fills fill filling".split()
)
_REGION_NOUNS = frozenset(
    "side sides corner edge half third part portion area region quadrant section".split()
)
_FRAME_NOUNS = frozenset(
    "frame image picture photo photograph composition scene canvas shot view".split()
)
_DEPTH_WORDS = frozenset("foreground background midground distance".split())
#: Verbs and adverbs between a thing and where it is ("the dog *sits* on the left").
_PLACE_WORDS = frozenset(
    """sit sits sitting seated stand stands standing lie lies lying rest rests resting hang
    hangs hanging lean leans leaning perch perches perched park parks parked placed
    positioned located situated set appears appear remains remain waits wait grazes graze
    visible prominently slightly partially mostly just also further neatly clearly""".split()
)
#: A position after these is a direction, not a place ("faces to the left").
_DIRECTION_WORDS = frozenset(
    """face faces facing look looks looking turn turns turned turning gaze gazes gazing
    glance glances point points pointing head heads heading move moves moving walk walks
    walking run runs running lean leans leaning tilt tilts tilted tilting angled slant
    slants slanting flow flows falls fall comes coming streams streaming cast casts casting
    shines shining""".split()
)
_SKIPPABLE = STOPWORDS | _PLACE_WORDS | COLOURS | _MODIFIERS | frozenset(",")


class PositionClaim(NamedTuple):
    start: int  # token span, from the preposition to the last position word
    end: int
    horizontal: frozenset[str]  # acceptable thirds; empty = no claim on this axis
    vertical: frozenset[str]
    text: str


def _claim_sets(run: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]] | None:
    sides = {w for w in run if w in ("left", "right")}
    centre = any(w in ("center", "centre", "central") for w in run)
    middle = "middle" in run
    verts = {
        "top" if w in ("top", "upper") else "bottom"
        for w in run
        if w in ("top", "upper", "bottom", "lower")
    }
    if len(sides) > 1 or len(verts) > 1:
        return None
    horizontal: set[str] = set()
    vertical: set[str] = set(verts)
    if sides:
        horizontal = set(sides)
        if centre:  # "center-left": between the two
            horizontal.add("center")
    elif centre or middle:
        horizontal = {"center"}
    if not horizontal and not vertical:
        return None
    return frozenset(horizontal), frozenset(vertical)


@functools.lru_cache(maxsize=TEXT_CACHE)
def position_claims(text: str) -> tuple[PositionClaim, ...]:
    """Absolute coarse positions stated in ``text``: "<prep> the [far] <left|top right|...>
    [side|corner|...] [of the frame]" followed by a pause, a function or placement word.
    Relative ("to the left of the sofa"), body-part ("in his left hand"), direction ("faces
    to the right") and non-image uses ("on the top shelf") are skipped."""
    toks = tokens(text)
    n = len(toks)
    out = []
    after = 0
    for i in [i for i, t in enumerate(toks) if t in _POS_WORDS]:
        if i < after:
            continue
        j = i + 1
        while j < n and toks[j] in _POS_WORDS:
            j += 1
        after = j
        claim = _claim_at(toks, i, j)
        if claim is not None:
            out.append(claim)
    return tuple(out)


def _claim_at(toks: tuple[str, ...], i: int, j: int) -> PositionClaim | None:
    """The claim made by the position words toks[i:j], if they are an absolute position."""
    n = len(toks)
    # before: <prep> the [far|very]
    k = i - 1
    while k >= 0 and toks[k] in ("far", "very", "extreme"):
        k -= 1
    if not (
        k >= 1
        and toks[k] == "the"
        and toks[k - 1] in _POS_PREPS
        and not (k >= 2 and toks[k - 2] in _DIRECTION_WORDS)
    ):
        return None
    # after: [hand side] [region noun] [of the <frame noun>], then a pause or function word
    m = j
    if m < n and toks[m] == "hand":
        if not (m + 1 < n and toks[m + 1] in ("side", "sides")):
            return None  # "in his left hand"
        m += 1
    if m < n and toks[m] in _REGION_NOUNS:
        m += 1
    follower = toks[m] if m < n else "."
    if follower == "of":
        g = m + 1
        while g < n and toks[g] in ("the", "a", "an", "this", "our"):
            g += 1
        if not (g < n and toks[g] in _FRAME_NOUNS):
            return None  # relative: "to the left of the sofa"
    elif not (
        follower in _PUNCT
        or follower in STOPWORDS
        or follower in _PLACE_WORDS
        or follower in _DEPTH_WORDS
    ):
        return None  # "on the top shelf"
    sets = _claim_sets(toks[i:j])
    if sets is None:
        return None
    start = k - 1
    return PositionClaim(start, j, sets[0], sets[1], " ".join(toks[start:j]))


def _attach(
    toks: tuple[str, ...], claim: PositionClaim, mentions: tuple[Mention, ...], max_gap: int
) -> Mention | None:
    """The mention a claim is about: the thing right before it ("a dog [sits] on the left")
    or, when the claim opens its clause, right after it ("On the left, a dog"). Only
    function, placement and modifier words may sit between; anything else (an unannotated
    noun: "a lamp on the left") means the claim is not about an annotated object."""
    by_end = {m.end: m for m in mentions}
    by_start = {m.start: m for m in mentions}
    k, gap = claim.start - 1, 0
    while k >= 0 and gap <= max_gap:
        if k + 1 in by_end:
            return by_end[k + 1]
        t = toks[k]
        if t in _SENTENCE_END:
            break
        if t not in _SKIPPABLE:
            return None
        k -= 1
        gap += 1
    k, gap = claim.end, 0
    while k < len(toks) and gap <= max_gap:
        if k in by_start:
            return by_start[k]
        t = toks[k]
        if t in _SENTENCE_END or t not in _SKIPPABLE:
            return None
        k += 1
        gap += 1
    return None


def _thirds(obj: dict[str, Any], width: int, height: int) -> tuple[float, float] | None:
    bbox = obj.get("bbox")
    if not bbox or len(bbox) != 4:
        return None
    x, y, w, h = (float(v) for v in bbox)
    return (x + w / 2) / width, (y + h / 2) / height


def _agrees(value: float, allowed: frozenset[str], margin: float, low: str, high: str) -> bool:
    if not allowed:
        return True
    for place in allowed:
        if place == low and value < 1 / 3 + margin:
            return True
        if place == high and value > 2 / 3 - margin:
            return True
        if place not in (low, high) and 1 / 3 - margin <= value <= 2 / 3 + margin:
            return True
    return False


@dataclass
class Positions:
    """Coarse positions the rationale gives an annotated object ("a dog on the left", "the
    cup in the top right corner") agree with its boxes: the box centre lies in the named
    third (left/center/right, top/middle/bottom), give or take ``margin`` of the image; a
    category with several instances agrees if any instance does. Only claims attached to a
    category mention are checked (see :func:`position_claims`). Score: share of checked
    claims that agree. The default ``min_fraction`` of 0.5 rejects a row when most of its
    claims are wrong, tolerating one parser slip in a longer rationale."""

    name: ClassVar[str] = "positions"
    description: ClassVar[str] = "stated object positions agree with the COCO boxes (thirds)"
    default_enabled: ClassVar[bool] = True

    min_fraction: float = 0.5
    margin: float = 0.05
    max_gap: int = 4  # words allowed between an object and its position phrase
    fields: tuple[str, ...] = ("rationale",)  # e.g. add "layout"

    def check(self, row: dict[str, Any]) -> Verdict:
        objects = _objects(row)
        width, height = row.get("width"), row.get("height")
        if not objects or not width or not height:
            return ok(self.name)
        by_cat: dict[str, list[tuple[float, float]]] = {}
        for o in objects:
            centre = _thirds(o, width, height)
            if centre is not None:
                by_cat.setdefault(o["category"], []).append(centre)
        matcher = _matcher(True, ())
        checked = 0
        bad = []
        for name in self.fields:
            text = _text(row.get(name))
            if not text:
                continue
            claims = position_claims(text)
            if not claims:
                continue
            toks = tokens(text)
            mentions = tuple(m for m in _mentions(text, by_cat, matcher) if m.clear)
            for claim in claims:
                mention = _attach(toks, claim, mentions, self.max_gap)
                if mention is None:
                    continue
                checked += 1
                centres = by_cat[mention.category]
                if not any(
                    _agrees(cx, claim.horizontal, self.margin, "left", "right")
                    and _agrees(cy, claim.vertical, self.margin, "top", "bottom")
                    for cx, cy in centres
                ):
                    boxes = [o["bbox"] for o in objects if o["category"] == mention.category]
                    at = "/".join(dict.fromkeys(coarse_position(b, width, height) for b in boxes))
                    bad.append(f"{mention.category} {claim.text!r} but box at {at}")
        if not checked:
            return ok(self.name)
        score = 1 - len(bad) / checked
        if score < self.min_fraction:
            return fail(
                self.name,
                score,
                f"{len(bad)} of {checked} position claims disagree with the boxes: "
                f"{_short(bad, 3)} (min {self.min_fraction:.0%} agree)",
            )
        return ok(self.name, score)


# -- variants --------------------------------------------------------------------------------


@dataclass
class Variants:
    """Prompt variants (``short_caption``, ``paraphrases``, ``varied_captions``,
    ``object_prompts``, ``tags``) are there, non-empty, distinct from each other (case and
    spacing ignored; tags are compared among tags) and not copies of the rationale (equal,
    containing it, or sharing a prefix of more than ``max_overlap`` of its length). A
    missing or empty field counts as one bad variant. Score: share of fine variants."""

    name: ClassVar[str] = "variants"
    description: ClassVar[str] = "prompt variants present, distinct, not copies of the rationale"
    default_enabled: ClassVar[bool] = True

    min_fraction: float = 0.9
    max_overlap: float = 0.9
    fields: tuple[str, ...] = (
        "short_caption",
        "paraphrases",
        "varied_captions",
        "object_prompts",
        "tags",
    )

    def check(self, row: dict[str, Any]) -> Verdict:
        raw = _text(row.get("rationale"))
        rationale: str | None = None  # normalised only when a variant is long enough
        total = 0
        bad: list[str] = []
        seen: tuple[set[str], set[str]] = (set(), set())  # sentences, tags
        for name in self.fields:
            value = row.get(name)
            items = [value] if isinstance(value, str) else [v for v in value or () if v is not None]
            if not items:
                total += 1
                bad.append(f"{name} missing")
                continue
            is_tag = name == "tags"
            pool = seen[is_tag]
            for i, item in enumerate(items):
                total += 1
                text = _norm_variant(str(item))
                problem = None
                if not text:
                    problem = "empty"
                elif text in pool:
                    problem = "duplicate"
                elif not is_tag and len(text) > self.max_overlap * 0.5 * len(raw):
                    if rationale is None:
                        rationale = _norm_variant(raw)
                    if rationale and self._copies(text, rationale):
                        problem = "copies the rationale"
                pool.add(text)
                if problem:
                    bad.append(f"{name if isinstance(value, str) else f'{name}[{i}]'} {problem}")
        score = 1 - len(bad) / total if total else 1.0
        if score < self.min_fraction:
            return fail(
                self.name,
                score,
                f"{len(bad)} of {total} variants bad ({score:.0%} fine, "
                f"min {self.min_fraction:.0%}): {_short(bad, 4)}",
            )
        return ok(self.name, score)

    def _copies(self, text: str, rationale: str) -> bool:
        if len(text) >= len(rationale):
            return rationale in text
        if len(text) <= self.max_overlap * len(rationale) or text[:16] != rationale[:16]:
            return False
        prefix = len(os.path.commonprefix([text, rationale]))
        return prefix > self.max_overlap * len(rationale)


# -- registry --------------------------------------------------------------------------------
TEXT_RULES: dict[str, type] = {
    r.name: r
    for r in (
        Length,
        Facets,
        Boilerplate,
        Repetition,
        LanguageCheck,
        CaptionCoverage,
        Counts,
        ObjectsMentioned,
        Hallucination,
        Positions,
        Variants,
    )
}
#: Every rule check, text and image, by name (the names of schema.TEXT_CHECKS/IMAGE_CHECKS).
RULES: dict[str, type] = {**TEXT_RULES, **IMAGE_RULES}

#: Checks switched on when ``build_rules`` gets ``enabled=None``.
DEFAULT_ENABLED = frozenset(n for n, r in RULES.items() if r.default_enabled)

#: Named configurations: which checks are on and their parameter overrides.
PRESETS: dict[str, dict[str, Any]] = {
    "lenient": {
        "enabled": [
            "length",
            "facets",
            "boilerplate",
            "repetition",
            "language",
            "objects_mentioned",
            "image_size",
            "aspect_ratio",
        ],
        "params": {
            "length": {
                "min_words": 30,
                "max_words": 500,
                "facet_min_words": 1,
                "facet_max_words": 200,
            },
            "facets": {"min_chars": 4},
            "boilerplate": {"forbid_openers": False},
            "repetition": {"max_ratio": 0.45, "run_length": 8},
            "language": {"min_confidence": 0.3},
            "objects_mentioned": {"min_fraction": 0.5, "min_area_fraction": 0.02},
            "image_size": {"min_side": 128},
            "aspect_ratio": {"max_ratio": 4.0},
        },
    },
    "default": {
        "enabled": sorted(DEFAULT_ENABLED),
        "params": {},
    },
    "strict": {
        "enabled": sorted(RULES),
        "params": {
            "length": {
                "min_words": 80,
                "max_words": 280,
                "facet_min_words": 5,
                "facet_max_words": 100,
            },
            "facets": {"min_chars": 20},
            "boilerplate": {"forbid_openers": True},
            "repetition": {"max_ratio": 0.2, "run_length": 4},
            "language": {"min_confidence": 0.8},
            "caption_coverage": {"min_fraction": 0.6},
            "objects_mentioned": {"min_fraction": 0.9, "min_area_fraction": 0.005},
            "positions": {"min_fraction": 1.0, "fields": ["rationale", "layout"]},
            "variants": {"min_fraction": 1.0},
            "image_size": {"min_side": 384},
            "aspect_ratio": {"max_ratio": 2.5},
            "text_in_image": {"max_fraction": 0.1},
        },
    },
}


def rule_params(name: str) -> dict[str, Any]:
    """A rule's parameters and their defaults."""
    cls = RULES[name]
    out = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


_KINDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    tuple: "a list",
    dict: "a mapping",
}


def _coerce(rule: str, param: str, value: Any, default: Any) -> Any:
    """Values from a command line or YAML into the type of the default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int) and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float) and not isinstance(value, bool):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return tuple(value)
        if isinstance(default, dict) and not isinstance(value, dict):
            raise ValueError(value)
    except (TypeError, ValueError) as exc:
        kind = _KINDS.get(type(default), type(default).__name__)
        raise ValueError(
            f"rule {rule!r}: parameter {param!r} must be {kind}, got {value!r}"
        ) from exc
    return value


def _unknown_rule(name: str) -> ValueError:
    return ValueError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}")


def build_rules(
    enabled: set[str] | Iterable[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> list[Any]:
    """Instantiate the ``enabled`` rules (``None``: those on by default) with ``params``
    (rule -> parameter -> value) overriding their defaults, in registry order.

    Raises ``ValueError`` for an unknown rule or parameter (also for rules that are not
    enabled, so a typo never goes unnoticed) or a value of the wrong type."""
    names = set(DEFAULT_ENABLED if enabled is None else enabled)
    params = params or {}
    for name in sorted(names | set(params)):
        if name not in RULES:
            raise _unknown_rule(name)
    checked: dict[str, dict[str, Any]] = {}
    for rule, values in params.items():
        defaults = rule_params(rule)
        for param, value in (values or {}).items():
            if param not in defaults:
                raise ValueError(
                    f"rule {rule!r} has no parameter {param!r}; "
                    f"its parameters: {', '.join(defaults) or '(none)'}"
                )
            checked.setdefault(rule, {})[param] = _coerce(rule, param, value, defaults[param])
    return [cls(**checked.get(name, {})) for name, cls in RULES.items() if name in names]


__all__ = [
    "COCO_CATEGORIES",
    "COCO_RECALL_SYNONYMS",
    "COCO_SYNONYMS",
    "DEFAULT_ENABLED",
    "PRESETS",
    "RULES",
    "TEXT_RULES",
    "AspectRatio",
    "Boilerplate",
    "CaptionCoverage",
    "Counts",
    "Facets",
    "Hallucination",
    "ImageSize",
    "LanguageCheck",
    "Length",
    "ObjectsMentioned",
    "Positions",
    "Repetition",
    "TextInImage",
    "Variants",
    "build_rules",
    "count_claims",
    "language_detector",
    "position_claims",
    "rule_params",
]
