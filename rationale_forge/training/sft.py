"""``train/sft.py`` as a library: script arguments and the run, wired from the pieces.

1. load the checkpoint and the dataset (our export, the ReasonGen-R1 layout, a Hub id);
2. map rows to examples (unusable rows are reported, not fatal);
3. tokenise every image once into the on-disk cache (:mod:`.image_cache`);
4. train with :class:`~.sft_trainer.JanusSFTTrainer`, save model + processor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import cache_dir
from ..ui import console, summary_table
from .data import (
    DEFAULT_STYLE_WEIGHTS,
    PROMPT_STYLES,
    DataError,
    image_key,
    iter_examples,
    load_rows,
    open_image,
)
from .image_cache import ImageTokenCache, vq_fingerprint
from .janus import DEFAULT_INSTRUCTION, load_janus
from .sequence import LossWeights
from .sft_trainer import JanusSFTTrainer, SFTCollator, examples_dataset

__all__ = ["SFTScriptArguments", "parse_style_weights", "run_sft"]


@dataclass
class SFTScriptArguments:
    """What to train on; the optimiser, batch and schedule are TRL's ``SFTConfig`` flags."""

    model: str = field(metadata={"help": "Janus-Pro checkpoint: a directory or a Hub id"})
    dataset: str = field(
        metadata={
            "help": "an exported dataset folder (forge export), a save_to_disk folder or "
            "a Hub id; forge or ReasonGen-R1 columns"
        }
    )
    dataset_split: str = field(default="train", metadata={"help": "split to train on"})
    max_examples: int | None = field(default=None, metadata={"help": "use the first N rows"})
    image_cache_dir: str | None = field(
        default=None,
        metadata={"help": "where image codes are cached; unset: $FORGE_CACHE_DIR/image-tokens"},
    )
    encode_batch_size: int = field(default=32, metadata={"help": "images per VQ encoder call"})
    prompt_styles: str = field(
        default=",".join(f"{k}={v}" for k, v in DEFAULT_STYLE_WEIGHTS.items()),
        metadata={"help": f"style=weight list; styles: {', '.join(PROMPT_STYLES)}"},
    )
    condition_dropout: float = field(
        default=0.1, metadata={"help": "share of rows whose prompt and rationale become padding"}
    )
    text_weight: float = field(default=2.0, metadata={"help": "loss weight of rationale tokens"})
    image_weight: float = field(default=1.0, metadata={"help": "loss weight of image tokens"})
    boi_weight: float = field(default=0.5, metadata={"help": "loss weight of <begin_of_image>"})
    max_rationale_tokens: int = field(default=512, metadata={"help": "longer ones are cut"})
    instruction: str = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "added after the prompt in the user turn"}
    )


def parse_style_weights(text: str) -> dict[str, float]:
    """``"caption=0.5,tags=0.5"`` -> dict; unknown styles and bad numbers are errors."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt style {name!r}; known: {', '.join(PROMPT_STYLES)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"prompt style {name}: weight {value!r} is not a number") from None
        if weights[name] < 0:
            raise ValueError(f"prompt style {name}: weight must be >= 0")
    if not any(weights.values()):
        raise ValueError("at least one prompt style needs a positive weight")
    return weights


def run_sft(script: SFTScriptArguments, training_args) -> JanusSFTTrainer:
    """Train and save; returns the trainer (its collator counts styles and dropouts)."""
    weights = parse_style_weights(script.prompt_styles)
    bundle = load_janus(script.model)
    rows = load_rows(script.dataset, script.dataset_split)
    if script.max_examples is not None:
        rows = rows.select(range(min(script.max_examples, len(rows))))

    errors: list[str] = []
    examples = [ex for _, ex in iter_examples(rows, errors)]
    cache = ImageTokenCache(
        script.image_cache_dir or cache_dir() / "image-tokens", vq_fingerprint(bundle)
    )
    cache.fill(
        bundle,
        ((image_key(row), row["image"]) for row in rows),
        batch_size=script.encode_batch_size,
        total=len(rows),
        open_image=open_image,
        errors=errors,
    )
    examples = [ex for ex in examples if ex.key in cache]
    for message in errors[:10]:
        console.print(f"[yellow]skipped[/] {message}")
    if not examples:
        raise DataError(f"{script.dataset}: no usable rows ({len(errors)} skipped)")

    # rows are tokenised by the collator (a prompt style is drawn per step), not up front
    prepared = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    training_args.dataset_kwargs = prepared
    training_args.remove_unused_columns = False
    collator = SFTCollator(
        bundle,
        cache,
        style_weights=weights,
        condition_dropout=script.condition_dropout,
        max_rationale_tokens=script.max_rationale_tokens,
        instruction=script.instruction,
        seed=training_args.seed,
    )
    trainer = JanusSFTTrainer(
        model=bundle.model,
        args=training_args,
        train_dataset=examples_dataset(examples),
        data_collator=collator,
        processing_class=bundle.processor,
        loss_weights=LossWeights(script.text_weight, script.image_weight, script.boi_weight),
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    bundle.processor.save_pretrained(training_args.output_dir)

    counts = collator.counts
    losses = [h for h in trainer.state.log_history if "loss" in h]
    summary = {
        "examples": len(examples),
        "rows skipped": len(errors),
        "images encoded": cache.encoded,
        "images from cache": max(0, len(examples) - cache.encoded),
        "condition dropout": f"{counts['dropped']}/{counts['rows']}",
        "rationales cut": counts["truncated"],
        "first loss": f"{losses[0]['loss']:.4f}" if losses else "- (see --logging_steps)",
        "last loss": f"{losses[-1]['loss']:.4f}" if losses else "- (see --logging_steps)",
        "saved to": training_args.output_dir,
    }
    console.print(summary_table("SFT", list(summary.items())))
    Path(training_args.output_dir, "sft_summary.json").write_text(
        json.dumps({k: str(v) for k, v in summary.items()}, indent=2)
    )
    return trainer
