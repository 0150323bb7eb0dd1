"""Sampling from Janus-Pro: the rationale (text head), then the image (generation head).

One loop serves three users: ``train/generate.py`` (look at a checkpoint), the GRPO rollout
(which also needs the token ids and their log-probs) and ``train/evaluate.py``.

1. *Think* (optional): sample the rationale with the text head, batched, until EOS or
   ``<begin_of_image>`` or ``max_rationale_tokens``.
2. *Draw*: append ``<begin_of_image>`` (forced when the model did not write it), then sample
   ``image_tokens`` VQ codes with the generation head. Classifier-free guidance runs a second,
   unconditional row per sample whose prompt and rationale are padding (as condition dropout
   trained it): ``guided = uncond + w * (cond - uncond)``.

``cfg_mode`` says which distribution is sampled and which one the log-probs describe:
``none`` samples and scores the conditional model (no unconditional rows at all);
``sample_only`` samples from the guided distribution but reports conditional log-probs;
``guided`` samples and scores the guided distribution. Log-probs are
``log_softmax(logits / temperature)`` at the sampled token (top-p only truncates what may be
sampled), the same quantity :mod:`.logprobs` recomputes over a full sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .janus import DEFAULT_INSTRUCTION, JanusBundle

__all__ = [
    "CFG_MODES",
    "Sample",
    "SamplingConfig",
    "generate_samples",
    "sample_next",
    "save_samples",
]

CFG_MODES = ("none", "sample_only", "guided")


@dataclass
class SamplingConfig:
    """How to sample. Text and image tokens have their own temperature and top-p."""

    think: bool = True
    max_rationale_tokens: int = 448
    temperature: float = 1.0
    top_p: float = 1.0
    image_temperature: float = 1.0
    image_top_p: float = 1.0
    cfg_weight: float = 5.0
    cfg_mode: str = "guided"
    use_cache: bool = True
    seed: int | None = None
    batch_size: int = 8
    instruction: str | None = DEFAULT_INSTRUCTION
    decode: bool = True  # decode the VQ codes to a PIL image

    def __post_init__(self) -> None:
        if self.cfg_mode not in CFG_MODES:
            raise ValueError(f"cfg_mode must be one of {', '.join(CFG_MODES)}: {self.cfg_mode!r}")
        for name in ("temperature", "image_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = greedy)")
        for name in ("top_p", "image_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")

    @property
    def uses_uncond(self) -> bool:
        return self.cfg_mode != "none" and self.cfg_weight != 1.0


@dataclass
class Sample:
    """One sampled rationale + image, with what the GRPO loss needs to score it again."""

    prompt: str
    rationale: str
    image: Image.Image | None
    prompt_ids: list[int]
    rationale_ids: list[int]  # sampled text tokens, without the stop token
    image_codes: list[int]
    text_logprobs: list[float] = field(default_factory=list)
    image_logprobs: list[float] = field(default_factory=list)
    boi_sampled: bool = False  # the model wrote <begin_of_image> itself (else it was forced)
    boi_logprob: float | None = None  # its log-prob when sampled
    stop: str = "none"  # "boi", "eos", "length" or "none" (no thinking)


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask all but the smallest set of tokens whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    # a token is dropped when the mass before it already reaches top_p (the first never is)
    drop = (probs.cumsum(-1) - probs) >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    score_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; return (tokens, log-probs under ``score_logits``/T).

    ``temperature == 0`` is greedy; its log-probs are those of temperature 1.
    """
    logits = logits.float()
    score = (logits if score_logits is None else score_logits).float()
    if temperature == 0:
        tokens = logits.argmax(-1)
        scale = 1.0
    else:
        filtered = _filter_top_p(logits / temperature, top_p)
        probs = torch.softmax(filtered, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        scale = temperature
    logprobs = torch.log_softmax(score / scale, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    return tokens, logprobs


def _left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


class _Stepper:
    """Feeds a left-padded batch one token at a time, with or without a KV cache."""

    def __init__(self, bundle: JanusBundle, ids, image_mask, mask, use_cache: bool):
        self.b, self.use_cache = bundle, use_cache
        self.ids, self.image_mask, self.mask = ids, image_mask, mask
        self.cache = bundle.new_cache() if use_cache else None

    def first(self) -> torch.Tensor:
        """Hidden state of the last position after reading the whole batch."""
        embeds = self.b.embed(self.ids, self.image_mask)
        out = self.b.hidden(
            embeds, self.mask, _positions(self.mask), cache=self.cache, use_cache=self.use_cache
        )
        return out.last_hidden_state[:, -1]

    def step(self, tokens: torch.Tensor, is_image: bool, alive: torch.Tensor) -> torch.Tensor:
        """Append one token per row (rows not ``alive`` get a masked pad); next hidden state."""
        token_mask = torch.full_like(tokens, is_image, dtype=torch.bool)
        self.ids = torch.cat([self.ids, tokens[:, None]], 1)
        self.image_mask = torch.cat([self.image_mask, token_mask[:, None]], 1)
        self.mask = torch.cat([self.mask, alive.long()[:, None]], 1)
        if not self.use_cache:
            return self.first()
        if is_image:
            embeds = self.b.model.prepare_embeddings_for_image_generation(tokens[:, None])
        else:
            embeds = self.b.model.get_input_embeddings()(tokens[:, None])
        positions = _positions(self.mask)[:, -1:]
        out = self.b.hidden(embeds, self.mask, positions, cache=self.cache, use_cache=True)
        return out.last_hidden_state[:, -1]


@torch.no_grad()
def _think(
    bundle: JanusBundle, prompt_ids: list[list[int]], config: SamplingConfig, generator
) -> list[tuple[list[int], list[float], str, float | None]]:
    """Sample rationales; per row (tokens, log-probs, stop reason, boi log-prob)."""
    # Bookkeeping stays on the device: one host sync per step (are any rows still writing?),
    # the results cross to the host once at the end.
    device = bundle.device
    ids, mask = _left_pad(prompt_ids, bundle.pad_id, device)
    stepper = _Stepper(bundle, ids, torch.zeros_like(ids, dtype=torch.bool), mask, config.use_cache)
    hidden = stepper.first()
    n, cap = len(prompt_ids), config.max_rationale_tokens
    tokens_out = torch.full((n, cap), bundle.pad_id, dtype=torch.long, device=device)
    logps_out = torch.zeros((n, cap), device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    stop = torch.zeros(n, dtype=torch.long, device=device)  # 0 length, 1 boi, 2 eos
    boi_logp = torch.full((n,), float("nan"), device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    for step in range(cap + 1):
        logits = bundle.text_logits(hidden)
        tokens, logps = sample_next(logits, config.temperature, config.top_p, generator)
        is_boi, is_eos = tokens == bundle.boi_id, tokens == bundle.eos_id
        stop = torch.where(alive & is_boi, 1, torch.where(alive & is_eos, 2, stop))
        boi_logp = torch.where(alive & is_boi, logps.float(), boi_logp)
        # every row still writing has written `step` tokens; at the cap it stops (length)
        alive = alive & ~is_boi & ~is_eos & (step < cap)
        if step < cap:
            tokens_out[:, step] = torch.where(alive, tokens, bundle.pad_id)
            logps_out[:, step] = torch.where(alive, logps.float(), 0.0)
            lengths += alive.long()
        if not bool(alive.any()):
            break
        hidden = stepper.step(torch.where(alive, tokens, bundle.pad_id), False, alive)
    names = ("length", "boi", "eos")
    lengths_h, stop_h = lengths.tolist(), stop.tolist()
    tokens_h, logps_h, boi_h = tokens_out.tolist(), logps_out.tolist(), boi_logp.tolist()
    return [
        (
            tokens_h[i][: lengths_h[i]],
            logps_h[i][: lengths_h[i]],
            names[stop_h[i]],
            boi_h[i] if stop_h[i] == 1 else None,
        )
        for i in range(n)
    ]


def uncond_ids(bundle: JanusBundle, cond: list[int]) -> list[int]:
    """The unconditional twin of a conditional prefix: BOS, padding, <begin_of_image>."""
    return [bundle.bos_id] + [bundle.pad_id] * (len(cond) - 2) + [bundle.boi_id]


@torch.no_grad()
def _draw(
    bundle: JanusBundle, prefixes: list[list[int]], config: SamplingConfig, generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample image codes after each prefix (which ends with <begin_of_image>)."""
    n = len(prefixes)
    rows = prefixes + ([uncond_ids(bundle, p) for p in prefixes] if config.uses_uncond else [])
    ids, mask = _left_pad(rows, bundle.pad_id, bundle.device)
    stepper = _Stepper(bundle, ids, torch.zeros_like(ids, dtype=torch.bool), mask, config.use_cache)
    hidden = stepper.first()
    codes = torch.zeros((n, bundle.image_tokens), dtype=torch.long, device=bundle.device)
    logps = torch.zeros((n, bundle.image_tokens), device=bundle.device)
    alive = torch.ones(len(rows), dtype=torch.bool, device=bundle.device)
    for k in range(bundle.image_tokens):
        logits = bundle.image_logits(hidden).float()
        cond = logits[:n]
        if config.uses_uncond:
            guided = logits[n:] + config.cfg_weight * (cond - logits[n:])
            score = guided if config.cfg_mode == "guided" else cond
            tokens, lp = sample_next(
                guided, config.image_temperature, config.image_top_p, generator, score
            )
        else:
            tokens, lp = sample_next(cond, config.image_temperature, config.image_top_p, generator)
        codes[:, k], logps[:, k] = tokens, lp.float()
        if k + 1 < bundle.image_tokens:
            both = torch.cat([tokens, tokens]) if config.uses_uncond else tokens
            hidden = stepper.step(both, True, alive)
    return codes.cpu(), logps.cpu()


def generate_samples(
    bundle: JanusBundle, prompts: list[str], n: int = 1, config: SamplingConfig | None = None
) -> list[Sample]:
    """``n`` samples per prompt, in prompt-major order (all of prompt 0, then prompt 1 ...)."""
    config = config or SamplingConfig()
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=bundle.device).manual_seed(config.seed)
    flat = [p for p in prompts for _ in range(n)]
    was_training = bundle.model.training
    bundle.model.eval()
    out: list[Sample] = []
    try:
        for start in range(0, len(flat), max(1, config.batch_size)):
            batch = flat[start : start + config.batch_size]
            out.extend(_sample_batch(bundle, batch, config, generator))
    finally:
        bundle.model.train(was_training)
    return out


def _sample_batch(
    bundle: JanusBundle, prompts: list[str], config: SamplingConfig, generator
) -> list[Sample]:
    prompt_ids = [bundle.prompt_ids(p, config.instruction) for p in prompts]
    if config.think:
        thoughts = _think(bundle, prompt_ids, config, generator)
    else:
        thoughts = [([], [], "none", None) for _ in prompts]
    prefixes = [p + t[0] + [bundle.boi_id] for p, t in zip(prompt_ids, thoughts, strict=True)]
    codes, logps = _draw(bundle, prefixes, config, generator)
    images = bundle.decode_images(codes) if config.decode else [None] * len(prompts)
    samples = []
    for i, prompt in enumerate(prompts):
        tokens, text_lp, stop, boi_lp = thoughts[i]
        samples.append(
            Sample(
                prompt=prompt,
                rationale=bundle.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                image=images[i],
                prompt_ids=prompt_ids[i],
                rationale_ids=tokens,
                image_codes=codes[i].tolist(),
                text_logprobs=text_lp,
                image_logprobs=logps[i].tolist(),
                boi_sampled=stop == "boi",
                boi_logprob=boi_lp,
                stop=stop,
            )
        )
    return samples


def save_samples(samples: list[Sample], out_dir: str | Path, n: int) -> Path:
    """Write ``<prompt#>_<sample#>.png`` and ``samples.jsonl`` (prompt, rationale, image file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sample in enumerate(samples):
        name = f"{i // n:04d}_{i % n:02d}.png"
        if sample.image is not None:
            sample.image.save(out / name)
        lines.append(
            json.dumps(
                {
                    "prompt": sample.prompt,
                    "rationale": sample.rationale,
                    "image": name,
                    "stop": sample.stop,
                    "rationale_tokens": len(sample.rationale_ids),
                }
            )
        )
    (out / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return out
