"""Rewards for GRPO on generated images: VLM judges, CLIP similarity, weighted mixes, and
an adapter that turns any of them into a TRL ``GRPOTrainer`` reward function.

Every reward scores a batch of (user prompt, image) pairs and returns one
:class:`JudgeResult` per pair. A reward that cannot score a pair (server down, answer not
parseable, ...) gives ``score=None`` with a ``reason`` (also logged), never an exception,
so one bad request does not end a training step.

Judges see the user prompt and the image, not the rationale: the reward is about whether
the picture matches the request, however the model reasoned. Two judging modes:

* ``prob``: the judge answers yes/no in one token; the reward is
  p(yes) / (p(yes) + p(no)) from the first token's probabilities. Continuous, so fewer
  groups have all-equal rewards than with a binary reward.
* ``boxed``: the judge reasons, then answers ``\\boxed{1}`` (a perfect match) or
  ``\\boxed{0}``; the last box is the reward (binary, as in ReasonGen-R1).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from ..filters.clip import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from ..images import to_rgb
from ..prompting import PromptTemplate, load_template
from ..vlm.base import VLMRequest, VLMResult
from ..vlm.openai_backend import OpenAIBackend, OpenAIConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

MODES = ("prob", "boxed")
#: Default answer budget per mode: one token for yes/no, room to reason for boxed.
DEFAULT_MAX_TOKENS = {"prob": 1, "boxed": 1024}

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
# Leading whitespace as servers decode it, and as raw byte-level / sentencepiece pieces.
_LEADING_SPACE = " \t\n\u0120\u2581"


@dataclass
class JudgeResult:
    """One pair's reward: ``score`` (None when it could not be scored), why not
    (``reason``) and the judge's raw answer, when there is one."""

    score: float | None
    reason: str | None = None
    answer: str | None = None


# -- helpers ------------------------------------------------------------------------------
def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code.

    With no event loop running in this thread (a training loop, a worker thread) it runs
    here with ``asyncio.run``; inside a running loop (a notebook) it runs on a helper
    thread with a loop of its own, since the running loop cannot be blocked on."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def _check_batch(prompts: Sequence[str], images: Sequence[Image.Image]) -> None:
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images: one image per prompt")


def encode_image(image: Image.Image, fmt: str = "PNG", max_side: int | None = None) -> bytes:
    """``image`` as PNG or JPEG bytes (RGB), optionally downscaled to ``max_side``."""
    img = to_rgb(image)
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt.upper() in ("JPEG", "JPG"):
        img.save(buf, "JPEG", quality=95)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def parse_boxed(text: str | None) -> JudgeResult:
    """The verdict in the LAST ``\\boxed{...}`` of ``text``: 1.0, 0.0, or None with why."""
    if not text:
        return JudgeResult(None, "empty answer", text)
    boxes = _BOXED.findall(text)
    if not boxes:
        return JudgeResult(None, "no \\boxed{...} in the answer", text)
    verdict = boxes[-1].strip()
    if verdict not in ("0", "1"):
        return JudgeResult(None, f"the last \\boxed{{}} holds {verdict[:40]!r}, not 0 or 1", text)
    return JudgeResult(float(verdict), None, text)


def yes_probability(top_logprobs: Sequence[Mapping[str, Any]]) -> JudgeResult:
    """p(yes) / (p(yes) + p(no)) from one token position's top log-probs.

    Tokens match "yes"/"no" case-insensitively, ignoring leading spaces; the probabilities
    of every matching token are summed ("Yes" and " yes" both count). When only one of
    the two is among the top tokens the other is taken as 0 (it is below the smallest one
    listed); when neither is, the score is None."""
    p = {"yes": 0.0, "no": 0.0}
    seen = []
    for entry in top_logprobs:
        token, logprob = entry.get("token"), entry.get("logprob")
        if token is None or logprob is None:
            continue
        seen.append(token)
        word = token.lstrip(_LEADING_SPACE).lower()
        if word in p:
            p[word] += math.exp(logprob)  # -9999 (a masked token) gives exactly 0
    answer = max(p, key=p.get) if any(p.values()) else None
    if p["yes"] + p["no"] <= 0.0:
        shown = ", ".join(repr(t) for t in seen[:5]) or "none"
        return JudgeResult(
            None,
            f"neither 'yes' nor 'no' among the {len(seen)} top first-token log-probs "
            f"(top: {shown})",
        )
    return JudgeResult(p["yes"] / (p["yes"] + p["no"]), None, answer)


# -- the reward interface -----------------------------------------------------------------
class Reward:
    """Scores (prompt, image) pairs. Subclasses implement ``ascore`` or ``score`` (the
    other one is derived)."""

    name: str = "reward"

    async def ascore(
        self, prompts: Sequence[str], images: Sequence[Image.Image]
    ) -> list[JudgeResult]:
        return await asyncio.to_thread(self.score, prompts, images)

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[JudgeResult]:
        return run_sync(lambda: self.ascore(prompts, images))

    def scores(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[float | None]:
        """Just the scores."""
        return [r.score for r in self.score(prompts, images)]


def _failed(name: str, prompt: str, reason: str, answer: str | None = None) -> JudgeResult:
    log.warning("%s: no reward for prompt %r: %s", name, prompt[:80], reason)
    return JudgeResult(None, reason, answer)


# -- an OpenAI-compatible judge -----------------------------------------------------------
class _JudgeClient(OpenAIBackend):
    """The project's HTTP client (retries, backoff, key handling), keeping the log-probs
    that the rationale backend has no use for."""

    name = "judge"

    def _result(
        self, request: VLMRequest, answer: dict[str, Any], attempts: int, started: float
    ) -> VLMResult:
        result = super()._result(request, answer, attempts, started)
        choices = answer.get("choices") or []
        if choices:
            result.extra["logprobs"] = choices[0].get("logprobs")
        return result


class VLMJudge(Reward):
    """A VLM behind any OpenAI-compatible endpoint (in practice a vLLM server with
    Qwen2.5-VL) judges whether each image matches its prompt.

    ``template`` is a Jinja2 file rendered with ``prompt``; by default the packaged
    ``judge_prob.j2`` / ``judge_boxed.j2``. ``extra_body`` is merged into every request
    (vendor fields, e.g. vLLM's ``{"structured_outputs": {"choice": ["yes", "no"]}}``).
    The API key comes from the environment variable ``api_key_env`` and is never logged;
    a self-hosted server needs none."""

    def __init__(
        self,
        base_url: str,
        model: str,
        mode: str = "prob",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        template: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_logprobs: int = 20,
        image_format: str = "PNG",
        max_image_side: int | None = 768,
        extra_body: Mapping[str, Any] | None = None,
        backoff_s: float = 1.0,
        name: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"judge mode {mode!r}: expected one of {', '.join(MODES)}")
        if image_format.upper() not in ("PNG", "JPEG", "JPG"):
            raise ValueError(f"image_format {image_format!r}: expected PNG or JPEG")
        self.mode, self.model, self.base_url = mode, model, base_url
        self.name = name or f"judge_{mode}"
        self.max_concurrency = max(1, max_concurrency)
        self.image_format = "JPEG" if image_format.upper() in ("JPEG", "JPG") else "PNG"
        self.max_image_side = max_image_side
        self.template: PromptTemplate = load_template(template, default=f"judge_{mode}.j2")
        body: dict[str, Any] = {}
        if mode == "prob":
            body.update(logprobs=True, top_logprobs=top_logprobs)
        body.update(extra_body or {})
        self.config = OpenAIConfig(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=self.max_concurrency,
            timeout=timeout_s,
            max_retries=max_retries,
            backoff_base=backoff_s,
            temperature=temperature,
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS[mode],
            extra_body=body,
            structured="off",  # the answer is plain text (or one token), not the rationale schema
        )

    def render(self, prompt: str) -> str:
        """The judge's instruction for one user prompt."""
        return self.template.render(prompt=prompt)

    async def ascore(
        self, prompts: Sequence[str], images: Sequence[Image.Image]
    ) -> list[JudgeResult]:
        _check_batch(prompts, images)
        # A client per call: its HTTP session belongs to this call's event loop.
        client = _JudgeClient(self.config)
        gate = asyncio.Semaphore(self.max_concurrency)
        try:
            return await asyncio.gather(
                *(
                    self._one(client, gate, i, p, im)
                    for i, (p, im) in enumerate(zip(prompts, images, strict=True))
                )
            )
        finally:
            await client.aclose()

    async def _one(
        self,
        client: _JudgeClient,
        gate: asyncio.Semaphore,
        index: int,
        prompt: str,
        image: Image.Image,
    ) -> JudgeResult:
        try:
            async with gate:
                data = await asyncio.to_thread(
                    encode_image, image, self.image_format, self.max_image_side
                )
                mime = "image/jpeg" if self.image_format == "JPEG" else "image/png"
                request = VLMRequest(
                    key=str(index), prompt=self.render(prompt), image=data, image_mime=mime
                )
                result = await client.complete(request)
            return self._judge(prompt, result)
        except Exception as exc:  # a reward never ends the step; the reason says why
            return _failed(self.name, prompt, f"{type(exc).__name__}: {exc}")

    def _judge(self, prompt: str, result: VLMResult) -> JudgeResult:
        # One-token answers always stop for length in prob mode: that is not a failure.
        length_ok = self.mode == "prob" and result.error_kind == "length"
        if not result.ok and not length_ok:
            return _failed(self.name, prompt, result.error or str(result.error_kind), result.text)
        if self.mode == "boxed":
            verdict = parse_boxed(result.text)
        else:
            content = (result.extra.get("logprobs") or {}).get("content") or []
            if not content:
                return _failed(
                    self.name,
                    prompt,
                    "the server returned no log-probs (does it support logprobs/top_logprobs?)",
                    result.text,
                )
            first = content[0]
            verdict = yes_probability(first.get("top_logprobs") or [first])
            verdict.answer = result.text
        if verdict.score is None:
            return _failed(self.name, prompt, verdict.reason or "no score", verdict.answer)
        return verdict


# -- a local transformers judge ------------------------------------------------------------
class TransformersJudge(Reward):
    """A local VLM (``AutoModelForImageTextToText``) judges each pair: for single-machine
    runs with no judge server.

    ``prob`` mode reads p(yes) and p(no) off the model: the probability of each spelling
    ("yes", "Yes", " yes", ...) as a whole token sequence, so tokenizers that split "yes"
    into several pieces are handled exactly. ``boxed`` mode generates greedily and parses
    the last box."""

    def __init__(
        self,
        model_path: str,
        mode: str = "prob",
        device: str | None = None,
        template: str | None = None,
        max_tokens: int | None = None,
        batch_size: int = 4,
        name: str | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..vlm.errors import ModelUnavailableError
        from ..vlm.local import resolve_model

        if mode not in MODES:
            raise ValueError(f"judge mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        self.name = name or f"local_judge_{mode}"
        self.batch_size = max(1, batch_size)
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS[mode]
        self.template = load_template(template, default=f"judge_{mode}.j2")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        path = resolve_model(model_path)
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.net = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"cannot load judge model '{model_path}' from {path}: {exc}"
            ) from exc
        self.net.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation and last-position logits
        self.candidates = self._candidates()

    def _candidates(self) -> dict[str, list[tuple[int, ...]]]:
        """Token sequences of every spelling of yes and no (with and without a space)."""
        out: dict[str, list[tuple[int, ...]]] = {}
        for word in ("yes", "no"):
            seqs: set[tuple[int, ...]] = set()
            for form in (word, word.capitalize(), word.upper()):
                for text in (form, " " + form):
                    ids = tuple(self.tokenizer.encode(text, add_special_tokens=False))
                    if ids:
                        seqs.add(ids)
            out[word] = sorted(seqs)
        return out

    def _inputs(self, prompts: Sequence[str], images: Sequence[Image.Image]):
        texts = []
        for prompt in prompts:
            messages = [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": self.template.render(prompt=prompt)},
                    ],
                }
            ]
            texts.append(
                self.processor.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
        pictures = [[to_rgb(im)] for im in images]
        inputs = self.processor(text=texts, images=pictures, padding=True, return_tensors="pt")
        return inputs.to(self.device)

    def _prob_batch(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list:
        import torch

        inputs = self._inputs(prompts, images)
        with torch.inference_mode():
            last = self.net(**inputs, logits_to_keep=1).logits[:, -1].float()
            last = torch.log_softmax(last, dim=-1)
            per_word = {}
            for word, seqs in self.candidates.items():
                logps = [self._sequence_logprob(inputs, last, seq) for seq in seqs]
                per_word[word] = torch.logsumexp(torch.stack(logps, dim=-1), dim=-1)
            # p(yes) / (p(yes) + p(no)), in log space so tiny probabilities do not vanish
            score = torch.sigmoid(per_word["yes"] - per_word["no"])
        return [JudgeResult(float(s), None, "yes" if s >= 0.5 else "no") for s in score.tolist()]

    def _sequence_logprob(self, inputs, last, seq: tuple[int, ...]):
        """log p(seq | prompt) for each row: one more forward pass when seq has several
        tokens, with the candidate appended after the (left-padded) prompt."""
        import torch

        logp = last[:, seq[0]]
        if len(seq) == 1:
            return logp
        rows = inputs["input_ids"].shape[0]
        tail = torch.tensor(seq, device=self.device).expand(rows, -1)
        extended = dict(inputs)
        extended["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
        extended["attention_mask"] = torch.cat(
            [inputs["attention_mask"], torch.ones_like(tail)], dim=1
        )
        shape = inputs["input_ids"].shape
        for key, value in inputs.items():
            # per-token side inputs (mm_token_type_ids, ...): the appended tokens are text, 0
            if (
                key not in ("input_ids", "attention_mask")
                and getattr(value, "shape", None) == shape
            ):
                extended[key] = torch.cat([value, torch.zeros_like(tail)], dim=1)
        logits = self.net(**extended, logits_to_keep=len(seq)).logits.float()
        # logits[:, k] predicts the token after position L-1+k: tail[k+1] for k < len-1
        steps = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = steps.gather(-1, tail[:, 1:].unsqueeze(-1)).squeeze(-1)
        return logp + picked.sum(dim=-1)

    def _boxed_batch(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list:
        import torch

        inputs = self._inputs(prompts, images)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            output = self.net.generate(
                **inputs,
                max_new_tokens=self.max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id,
            )
        new = output[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [parse_boxed(t) for t in texts]

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[JudgeResult]:
        _check_batch(prompts, images)
        run = self._prob_batch if self.mode == "prob" else self._boxed_batch
        results: list[JudgeResult] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk_p = prompts[start : start + self.batch_size]
            chunk_i = images[start : start + self.batch_size]
            try:
                results.extend(run(chunk_p, chunk_i))
            except Exception as exc:  # a reward never ends the step
                reason = f"{type(exc).__name__}: {exc}"
                results.extend(JudgeResult(None, reason) for _ in chunk_p)
        for prompt, result in zip(prompts, results, strict=True):
            if result.score is None and result.reason:
                _failed(self.name, prompt, result.reason, result.answer)
        return results


# -- CLIP -----------------------------------------------------------------------------------
class ClipReward(Reward):
    """Cosine similarity in [-1, 1] between the image and the prompt (open_clip); prompts
    longer than CLIP's 77 tokens are cut by its tokenizer."""

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_MODEL,
        pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
        device: str | None = None,
        batch_size: int = 32,
        name: str = "clip",
    ):
        from ..filters.clip import ClipConfig, ClipScorer

        self.name = name
        self.batch_size = max(1, batch_size)
        self.scorer = ClipScorer(
            ClipConfig(
                model=model_name, pretrained=pretrained, device=device, batch_size=batch_size
            )
        )

    def score(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[JudgeResult]:
        _check_batch(prompts, images)
        results: list[JudgeResult] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk_p = list(prompts[start : start + self.batch_size])
            chunk_i = images[start : start + self.batch_size]
            try:
                pixels = [self.scorer.preprocess(to_rgb(im)) for im in chunk_i]
                scores = self.scorer.score(pixels, [[p] for p in chunk_p], [None] * len(chunk_p))
                results.extend(JudgeResult(s["clip_caption"]) for s in scores)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                results.extend(_failed(self.name, p, reason) for p in chunk_p)
        return results


# -- composition ----------------------------------------------------------------------------
class WeightedReward(Reward):
    """Several rewards mixed with positive weights, run concurrently.

    Missing values: a pair's reward is the weighted mean over the parts that gave a
    value (weights renormalised over those parts); when every part gave None, the pair's
    reward is None. ``last_parts`` keeps each part's scores from the latest call, for
    logging."""

    def __init__(self, parts: Sequence[tuple[Reward, float]], name: str = "reward"):
        if not parts:
            raise ValueError("a weighted reward needs at least one part")
        self.parts: list[tuple[str, Reward, float]] = []
        seen: dict[str, int] = {}
        for reward, weight in parts:
            if not (isinstance(weight, int | float) and math.isfinite(weight) and weight > 0):
                raise ValueError(f"reward {reward.name!r}: weight {weight!r} must be positive")
            seen[reward.name] = seen.get(reward.name, 0) + 1
            label = reward.name if seen[reward.name] == 1 else f"{reward.name}_{seen[reward.name]}"
            self.parts.append((label, reward, float(weight)))
        self.name = name
        self.last_parts: dict[str, list[float | None]] = {}

    async def ascore(
        self, prompts: Sequence[str], images: Sequence[Image.Image]
    ) -> list[JudgeResult]:
        _check_batch(prompts, images)
        outputs = await asyncio.gather(
            *(reward.ascore(prompts, images) for _, reward, _ in self.parts),
            return_exceptions=True,
        )
        per_part: list[list[JudgeResult]] = []
        for (label, _, _), out in zip(self.parts, outputs, strict=True):
            if isinstance(out, BaseException):  # a part that raised scores nothing
                reason = f"{type(out).__name__}: {out}"
                log.warning("%s: reward part failed for the whole batch: %s", label, reason)
                out = [JudgeResult(None, reason) for _ in prompts]
            per_part.append(out)
        self.last_parts = {
            label: [r.score for r in results]
            for (label, _, _), results in zip(self.parts, per_part, strict=True)
        }
        combined = []
        for i in range(len(prompts)):
            total = weights = 0.0
            missing = []
            for (label, _, weight), results in zip(self.parts, per_part, strict=True):
                result = results[i]
                if result.score is None:
                    missing.append(f"{label}: {result.reason or 'no score'}")
                else:
                    total += weight * result.score
                    weights += weight
            score = total / weights if weights else None
            combined.append(JudgeResult(score, "; ".join(missing) or None))
        return combined


REWARD_TYPES: dict[str, type[Reward]] = {
    "vlm_judge": VLMJudge,
    "transformers_judge": TransformersJudge,
    "clip": ClipReward,
}


def build_rewards(specs: Sequence[Mapping[str, Any] | Reward]) -> WeightedReward:
    """A weighted reward from specs such as
    ``[{"type": "vlm_judge", "weight": 1.0, "base_url": ..., "model": ...},
    {"type": "clip", "weight": 0.2}]`` (from a YAML config); the other keys are the
    constructor's arguments. A ready :class:`Reward` counts with weight 1."""
    if not specs:
        raise ValueError("no reward given: pass at least one reward spec")
    parts: list[tuple[Reward, float]] = []
    for index, spec in enumerate(specs):
        if isinstance(spec, Reward):
            parts.append((spec, 1.0))
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"reward spec {index}: expected a mapping, got {type(spec).__name__}")
        options = dict(spec)
        kind = options.pop("type", None)
        weight = options.pop("weight", 1.0)
        if kind not in REWARD_TYPES:
            raise ValueError(
                f"reward spec {index}: type {kind!r} unknown; expected one of "
                f"{', '.join(REWARD_TYPES)}"
            )
        try:
            reward = REWARD_TYPES[kind](**options)
        except TypeError as exc:
            raise ValueError(f"reward spec {index} ({kind}): {exc}") from exc
        parts.append((reward, weight))
    return WeightedReward(parts)


# -- TRL ------------------------------------------------------------------------------------
def prompt_text(prompt: Any) -> str:
    """The user's request from a TRL prompt: a string, or a conversation (the last user
    message's text)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for message in reversed(prompt):
            if isinstance(message, Mapping) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    texts = [c.get("text", "") for c in content if c.get("type") == "text"]
                    return " ".join(t for t in texts if t)
    raise ValueError(f"cannot read a prompt text from {type(prompt).__name__}: {prompt!r:.80}")


def _the_image(item: Any, index: int) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, list | tuple) and item and isinstance(item[-1], Image.Image):
        return item[-1]  # a list of images per sample: the generated one comes last
    raise ValueError(f"sample {index}: expected a PIL image, got {type(item).__name__}")


class TRLReward:
    """A TRL ``GRPOTrainer`` reward function around a :class:`Reward`.

    TRL calls it as ``f(prompts=..., completions=..., completion_ids=..., **columns)``;
    the generated images come as the extra field ``images`` from the rollout. Returns one
    float or None per sample (TRL turns None into NaN and ignores it). When TRL passes
    ``log_metric``/``log_extra``, the mean of each part and the reasons for missing
    rewards are logged too."""

    def __init__(self, reward: Reward, name: str | None = None):
        self.reward = reward
        self.__name__ = name or reward.name

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any] | None = None,
        images: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if images is None:
            raise ValueError(
                f"reward {self.__name__!r} needs the generated images: the rollout must "
                f"return them in an 'images' field"
            )
        if len(images) != len(prompts):
            raise ValueError(
                f"reward {self.__name__!r}: {len(prompts)} prompts but {len(images)} images"
            )
        texts = [prompt_text(p) for p in prompts]
        pictures = [_the_image(item, i) for i, item in enumerate(images)]
        results = self.reward.score(texts, pictures)
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric):
            parts = getattr(self.reward, "last_parts", {})
            for label, values in parts.items():
                present = [v for v in values if v is not None]
                if present:
                    log_metric(f"rewards/{label}/mean", sum(present) / len(present))
            log_metric(
                f"rewards/{self.__name__}/missing_frac",
                sum(r.score is None for r in results) / max(1, len(results)),
            )
        if callable(log_extra):
            log_extra(f"{self.__name__}_reason", [r.reason or "" for r in results])
        return [r.score for r in results]


def trl_reward(reward: Reward | Sequence[Mapping[str, Any]], name: str | None = None) -> TRLReward:
    """A TRL reward function from a reward or from reward specs (see :func:`build_rewards`)."""
    if not isinstance(reward, Reward):
        reward = build_rewards(reward)
    return TRLReward(reward, name)
