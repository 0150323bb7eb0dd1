"""A Janus-Pro checkpoint and the few operations on it that training and sampling share.

Janus is one Llama that reads and writes two kinds of tokens: text tokens (embedded by the
language model's table, predicted by ``lm_head``) and VQ image codes (embedded by the
generation embedding + aligner, predicted by the separate generation head). Transformers'
``forward()`` applies only the text head, so everything here works on the language model's
hidden states and routes each position to the right embedding and head.

A sequence is described by ``input_ids`` plus ``image_mask`` (True where the id is a VQ
code, not a text token): the ids overlap, the mask tells them apart.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import JanusForConditionalGeneration
from transformers.utils import ModelOutput

__all__ = [
    "JanusBundle",
    "JanusForRationaleGeneration",
    "load_janus",
    "mixed_embeddings",
    "to_model_image",
    "to_pil",
]

DEFAULT_INSTRUCTION = (
    "First think about the layout, style and composition of the image, then draw it."
)


@dataclass
class JanusBundle:
    """A loaded checkpoint: model, processor and the ids and sizes the trainer needs."""

    model: Any  # JanusForConditionalGeneration
    processor: Any  # JanusProcessor
    path: str

    def __post_init__(self) -> None:
        tok = self.processor.tokenizer
        self.tokenizer = tok
        self.bos_id = _token_id(tok, tok.bos_token, "BOS")
        self.eos_id = _token_id(tok, tok.eos_token, "EOS")
        self.pad_id = _token_id(tok, tok.pad_token or tok.eos_token, "pad")
        self.boi_id = _token_id(tok, getattr(tok, "boi_token", None) or "<begin_of_image>", "BOI")
        self.eoi_id = _token_id(tok, getattr(tok, "eoi_token", None) or "<end_of_image>", "EOI")
        vq = self.model.config.vq_config
        grid = vq.num_patches
        self.image_tokens = grid * grid
        self.image_size = grid * 2 ** (len(vq.channel_multiplier) - 1)
        self.codebook = vq.num_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- text ------------------------------------------------------------------------------
    def prompt_text(self, prompt: str, instruction: str | None = DEFAULT_INSTRUCTION) -> str:
        """The chat-formatted user turn, ending where the assistant starts writing."""
        content = f"{prompt}\n{instruction}" if instruction else prompt
        messages = [{"role": "user", "content": [{"type": "text", "text": content}]}]
        template = getattr(self.processor, "chat_template", None)
        if template:
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        return f"<|User|>: {content}\n\n<|Assistant|>:"

    def encode_text(self, text: str, bos: bool = False) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [self.bos_id, *ids] if bos else list(ids)

    def prompt_ids(self, prompt: str, instruction: str | None = DEFAULT_INSTRUCTION) -> list[int]:
        """BOS + the chat-formatted prompt."""
        return self.encode_text(self.prompt_text(prompt, instruction), bos=True)

    # -- embeddings and heads ------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """Input embeddings: text ids through the text table, VQ codes through the aligner."""
        return mixed_embeddings(self.model, input_ids, image_mask)

    def hidden(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ):
        """Run the language model on embeddings; returns its output (hidden states, cache)."""
        lm = self.model.model.language_model
        return lm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{_cache_kwarg(lm): cache},
        )

    def new_cache(self):
        """An empty KV cache for :meth:`hidden`."""
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config.text_config)
        except TypeError:  # transformers releases whose DynamicCache takes no config
            return DynamicCache()

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden)

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.model.generation_head(hidden)

    # -- images --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """VQ codes (B, image_tokens) of PIL images (resized and centre-cropped first)."""
        pixels = torch.stack([to_model_image(im, self.image_size) for im in images])
        vq = self.model.model.vqmodel
        pixels = pixels.to(self.device, next(vq.parameters()).dtype)
        codes = vq.encode(pixels).image_tokens
        return codes.view(len(images), -1).cpu()

    @torch.no_grad()
    def decode_images(self, codes: torch.Tensor) -> list[Image.Image]:
        """PIL images from VQ codes (B, image_tokens)."""
        pixels = self.model.decode_image_tokens(codes.to(self.device))
        return [to_pil(p) for p in pixels]


def mixed_embeddings(model, input_ids: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
    """Embed a sequence whose ``image_mask`` positions hold VQ codes, the rest text ids."""
    text = model.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
    if not bool(image_mask.any()):
        return text
    image = model.prepare_embeddings_for_image_generation(input_ids.masked_fill(~image_mask, 0))
    return torch.where(image_mask.unsqueeze(-1), image.to(text.dtype), text)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


@dataclass
class TokenScores(ModelOutput):
    """Per-token log-probs (and entropies) of the scored positions, shape (B, K)."""

    logps: torch.Tensor | None = None
    entropies: torch.Tensor | None = None


class JanusForRationaleGeneration(JanusForConditionalGeneration):
    """Janus-Pro with a forward over mixed text + image sequences, as training needs it.

    Called with ``image_mask``, ``forward`` scores the last ``logits_to_keep`` tokens of each
    row, every position through its own head, and returns :class:`TokenScores`. Everything
    runs inside ``forward``, so DDP / FSDP / DeepSpeed wrappers see one ordinary call.
    Without ``image_mask`` it is the stock model. Checkpoints stay stock: saved weights and
    config load with ``JanusForConditionalGeneration`` too.
    """

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        uncond_input_ids: torch.Tensor | None = None,
        text_temperature: float = 1.0,
        image_temperature: float = 1.0,
        cfg_weight: float = 1.0,
        compute_entropy: bool = False,
        **kwargs,
    ):
        if image_mask is None:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        keep = logits_to_keep or input_ids.shape[1] - 1
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)

        def hidden_of(ids: torch.Tensor) -> torch.Tensor:
            out = self.model.language_model(
                inputs_embeds=mixed_embeddings(self, ids, image_mask),
                attention_mask=attention_mask,
                position_ids=positions,
                use_cache=False,
            )
            return out.last_hidden_state[:, -keep - 1 : -1]

        hidden = hidden_of(input_ids)
        target = input_ids[:, -keep:]
        target_is_image = image_mask[:, -keep:]
        guided = cfg_weight != 1.0 and uncond_input_ids is not None
        uncond = hidden_of(uncond_input_ids) if guided and bool(target_is_image.any()) else None

        logps = torch.zeros(target.shape, dtype=torch.float32, device=input_ids.device)
        entropies = torch.zeros_like(logps) if compute_entropy else None
        for is_image in (False, True):
            sel = target_is_image if is_image else ~target_is_image
            if not bool(sel.any()):
                continue
            head = self.model.generation_head if is_image else self.lm_head
            logits = head(hidden[sel]).float()
            if is_image and uncond is not None:
                u = head(uncond[sel]).float()
                logits = u + cfg_weight * (logits - u)
            temperature = (image_temperature if is_image else text_temperature) or 1.0
            logits = logits / temperature
            logp = torch.log_softmax(logits, -1).gather(-1, target[sel][:, None]).squeeze(-1)
            logps = logps.masked_scatter(sel, logp)
            if entropies is not None:
                entropies = entropies.masked_scatter(sel, _entropy(logits))
        return TokenScores(logps=logps, entropies=entropies)

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        config = Path(save_directory) / "config.json"
        if config.exists():  # stock architecture name: the weights are the stock model's
            data = json.loads(config.read_text())
            data["architectures"] = ["JanusForConditionalGeneration"]
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _cache_kwarg(module) -> str:
    """``cache`` in recent transformers, ``past_key_values`` before the rename."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _token_id(tokenizer, token: str | None, what: str) -> int:
    ids = tokenizer.convert_tokens_to_ids(token) if token else None
    if ids is None or ids == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {what} token ({token!r}); is this a Janus model?")
    return int(ids)


def to_model_image(image: Image.Image, side: int) -> torch.Tensor:
    """Resize the short side to ``side``, centre-crop, scale to [-1, 1]; (3, side, side)."""
    image = image.convert("RGB")
    w, h = image.size
    scale = side / min(w, h)
    image = image.resize(
        (max(side, round(w * scale)), max(side, round(h * scale))), Image.Resampling.BICUBIC
    )
    w, h = image.size
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(side, side, 3).permute(2, 0, 1).float() / 127.5 - 1.0


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """(H, W, 3) in [-1, 1] -> PIL RGB (the processor's own post-processing is not used)."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(array, "RGB")


def _check_reachable(name: str | Path, what: str) -> None:
    """A name that is no local folder must come from the Hub: when the Hub cannot be
    reached, say so now instead of after the client's minutes of retries."""
    from ..vlm.local import go_offline_if_unreachable, hub_reachable

    if Path(name).exists():
        return
    if not hub_reachable():
        go_offline_if_unreachable()  # a Hub id already in the local cache still loads
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(str(name), "config.json") is None and "/" in str(name):
            raise FileNotFoundError(
                f"no {what} folder {name} here, and the Hugging Face Hub cannot be reached "
                "to fetch it as a Hub id (check the path)"
            )


def load_janus(
    model_path: str | Path, device: str | torch.device | None = None, dtype: Any = None
) -> JanusBundle:
    """Load a Hugging Face-format Janus-Pro checkpoint (a directory or a Hub id).

    ``device`` defaults to CUDA when available; ``dtype`` to float32 (training keeps fp32
    master weights and autocasts to bf16 on GPU).
    """
    from transformers import JanusProcessor

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _check_reachable(model_path, "checkpoint")
    try:
        processor = JanusProcessor.from_pretrained(str(model_path))
        model = JanusForRationaleGeneration.from_pretrained(
            str(model_path), dtype=dtype or torch.float32
        )
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load a Janus checkpoint from {model_path}: {err}. Pass a directory with "
            "config.json and the processor files, or a Hub id such as "
            "deepseek-community/Janus-Pro-1B."
        ) from err
    model.to(device)
    return JanusBundle(model=model, processor=processor, path=str(model_path))
