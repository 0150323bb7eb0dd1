"""Small, randomly initialised Janus-Pro checkpoints, built offline in a second or two.

They are not useful models: their weights are random. They exist so that every piece of the
trainer that takes a real Janus-Pro checkpoint directory (``JanusForConditionalGeneration``
and ``JanusProcessor`` in Hugging Face format, as ``deepseek-community/Janus-Pro-1B``) runs
without a download: the tests, the benchmarks (which take real model shapes from
:data:`SHAPES`) and a quick look at the scripts.

What is in the directory:

* ``config.json`` / ``model.safetensors``: a ``JanusForConditionalGeneration`` whose
  language model is a Llama (default: hidden size 64, 2 layers), a 1-layer vision tower and a
  VQ model with 16x downsampling (``image_size / 16`` squared image tokens; default 64 px ->
  16 tokens, codebook of 64 codes);
* a byte-level BPE tokenizer trained here on a few hundred English sentences, with Janus's
  special tokens (``<begin_of_image>``, ``<end_of_image>``, ``<image_placeholder>``, pad,
  BOS/EOS) and a Janus-style chat template (``<|User|>: ...`` / ``<|Assistant|>:``);
* the processor (``JanusProcessor`` + ``JanusImageProcessor``).

The same arguments give the same weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["JanusShape", "SHAPES", "build_tiny_janus", "janus_config", "CHAT_TEMPLATE"]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE = "<image_placeholder>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
SPECIAL_TOKENS = [BOS, EOS, PAD, IMAGE, BOI, EOI, "<|User|>", "<|Assistant|>"]

#: Janus-Pro's conversation format; string or list-of-parts content.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|User|>: {% elif message['role'] == 'assistant' %}"
    "<|Assistant|>: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}"
    "<image_placeholder>{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}\n\n{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


@dataclass(frozen=True)
class JanusShape:
    """The sizes that decide a Janus model's cost."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 128
    vocab: int = 0  # 0: the tiny tokenizer's size
    image_size: int = 64  # pixels; image tokens = (image_size / 16) ** 2
    codebook: int = 64  # VQ codes
    vq_channels: int = 32  # VQ encoder/decoder width (multiple of 32: GroupNorm)
    vq_embed: int = 8  # VQ code dimension


#: Named shapes: "tiny" for tests; the others copy the published checkpoints' sizes
#: (benchmarks build them with random weights).
SHAPES: dict[str, JanusShape] = {
    "tiny": JanusShape(),
    "small": JanusShape(
        hidden=512, layers=4, heads=8, kv_heads=8, intermediate=1408, image_size=384,
        codebook=16384, vq_channels=32,
    ),
    "janus-pro-1b": JanusShape(
        hidden=2048, layers=24, heads=16, kv_heads=16, intermediate=5632, vocab=102400,
        image_size=384, codebook=16384, vq_channels=128,
    ),
    "janus-pro-7b": JanusShape(
        hidden=4096, layers=30, heads=32, kv_heads=32, intermediate=11008, vocab=102400,
        image_size=384, codebook=16384, vq_channels=128,
    ),
}  # fmt: skip


def _train_tokenizer():
    """A byte-level BPE trained on a fixed English corpus, with Janus's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..vlm.tiny import _corpus

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=4096,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI},
    )


def janus_config(shape: JanusShape, vocab_size: int, token_ids: dict[str, int]):
    """A ``JanusConfig`` of the given shape (VQ with 16x downsampling, 5 levels)."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    if shape.image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16, got {shape.image_size}")
    grid = shape.image_size // 16
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        bos_token_id=token_ids[BOS],
        eos_token_id=token_ids[EOS],
        pad_token_id=token_ids[PAD],
    )
    vision = JanusVisionConfig(
        hidden_size=shape.hidden,
        num_hidden_layers=1,
        num_attention_heads=shape.heads,
        image_size=shape.image_size,
        patch_size=16,
        projection_dim=shape.hidden,
        num_image_tokens=grid * grid,
        intermediate_size=2 * shape.hidden,
        depth=1,
    )
    vq = JanusVQVAEConfig(
        embed_dim=shape.vq_embed,
        num_embeddings=shape.codebook,
        latent_channels=shape.vq_channels,
        base_channels=shape.vq_channels,
        channel_multiplier=[1, 1, 2, 2, 4] if shape.vq_channels >= 128 else [1, 1, 1, 1, 1],
        num_res_blocks=1 if shape.vq_channels < 128 else 2,
        num_patches=grid,
        projection_dim=shape.hidden,
        image_token_embed_dim=shape.hidden,
    )
    return JanusConfig(
        text_config=text,
        vision_config=vision,
        vq_config=vq,
        image_token_id=token_ids[IMAGE],
    )


def build_tiny_janus(
    out_dir: str | Path, seed: int = 0, shape: JanusShape | str = "tiny", save: bool = True
):
    """Build a random Janus-Pro checkpoint (model, tokenizer, processor) in ``out_dir``.

    ``shape`` is a :class:`JanusShape` or a name in :data:`SHAPES`. The directory loads with
    ``JanusForConditionalGeneration.from_pretrained`` and ``JanusProcessor.from_pretrained``
    (and :func:`rationale_forge.training.janus.load_janus`). Returns ``out_dir`` as a Path.
    With ``save=False`` nothing is written and ``(model, processor)`` is returned instead
    (for benchmarks of large shapes).
    """
    import torch
    from transformers import GenerationConfig, JanusImageProcessor, JanusProcessor

    from .janus import JanusForRationaleGeneration

    shape = SHAPES[shape] if isinstance(shape, str) else shape
    tokenizer = _train_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = shape.vocab or len(tokenizer)
    config = janus_config(shape, vocab, ids)
    torch.manual_seed(seed)
    model = JanusForRationaleGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        generation_kwargs={"boi_token_id": ids[BOI]},
    )
    side = shape.image_size
    processor = JanusProcessor(
        image_processor=JanusImageProcessor(
            size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=(side // 16) ** 2,
    )
    if not save:
        return model, processor
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tiny_janus.json").write_text(json.dumps({"seed": seed, **asdict(shape)}))
    return out
