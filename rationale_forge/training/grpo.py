"""``train/grpo.py`` as a library: script arguments, prompts, rewards and the run.

1. load the SFT checkpoint and the RL prompts (``forge prompts`` JSONL, a dataset folder or
   a Hub id);
2. build the reward from ``--reward KIND:WEIGHT`` flags (a VLM judge behind an
   OpenAI-compatible server, a local transformers judge, CLIP), mixed with those weights;
3. train with :class:`~.grpo_trainer.JanusGRPOTrainer`, log to the console, ``metrics.jsonl``
   and the installed trackers (:mod:`.track`), save model + processor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..flags import json_object
from ..ui import console, summary_table
from .grpo_trainer import JanusGRPOConfig, JanusGRPOTrainer
from .janus import load_janus
from .rewards import MODES, build_rewards, trl_reward

__all__ = ["GRPOScriptArguments", "load_prompts", "parse_rewards", "run_grpo"]

REWARD_KINDS = ("judge", "local_judge", "clip")


@dataclass
class GRPOScriptArguments:
    """What to train and how to reward it; the optimiser, batch, group size and rollout
    settings are ``JanusGRPOConfig`` flags (TRL's ``GRPOConfig`` plus the Janus ones)."""

    model: str = field(metadata={"help": "the SFT checkpoint (a directory or a Hub id)"})
    prompts: str = field(
        metadata={
            "help": "RL prompts: a JSONL file ({'prompt': ..., other fields}, as forge "
            "prompts writes), a datasets folder or a Hub id"
        }
    )
    prompts_split: str = field(
        default="train",
        metadata={"help": "a dataset's split, or the JSONL rows' split field (train/val)"},
    )
    prompt_column: str = field(default="prompt", metadata={"help": "column holding the prompt"})
    max_prompts: int | None = field(default=None, metadata={"help": "use the first N prompts"})
    reward: list[str] = field(
        default_factory=lambda: ["judge:1.0"],
        metadata={
            "help": "KIND:WEIGHT, repeatable; kinds: judge (OpenAI-compatible VLM server), "
            "local_judge (a transformers VLM), clip"
        },
    )
    judge_base_url: str | None = field(
        default=None, metadata={"help": "judge server, e.g. http://localhost:8000/v1"}
    )
    judge_model: str | None = field(default=None, metadata={"help": "the judge's model name"})
    judge_mode: str = field(
        default="prob",
        metadata={
            "help": "prob: p(yes)/(p(yes)+p(no)), continuous; boxed: \\boxed{0|1} verdict",
            "choices": list(MODES),
        },
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "env variable holding the judge's API key"}
    )
    judge_concurrency: int = field(default=32, metadata={"help": "judge requests in flight"})
    judge_extra_body: str | None = field(
        default=None,
        metadata={
            "help": "JSON merged into every judge request, e.g. vLLM's "
            '{"structured_outputs": {"choice": ["yes", "no"]}} for prob mode'
        },
    )
    judge_timeout: float = field(default=120.0, metadata={"help": "seconds per judge request"})
    local_judge_model: str | None = field(
        default=None, metadata={"help": "local_judge: a transformers VLM directory or Hub id"}
    )
    clip_model: str | None = field(default=None, metadata={"help": "clip: open_clip model"})
    clip_pretrained: str | None = field(default=None, metadata={"help": "clip: its weights"})
    trackers: str = field(
        default="auto",
        metadata={
            "help": "auto (installed ones), none, or a comma list of tensorboard,trackio,wandb"
        },
    )


def merge_repeated_flag(argv: list[str], flag: str = "--reward") -> list[str]:
    """``--reward a --reward b`` -> ``--reward a b`` (argparse keeps only the last one)."""
    values, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == flag:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                values.append(argv[j])
                j += 1
            i = j
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
            i += 1
        else:
            rest.append(arg)
            i += 1
    return rest + ([flag, *values] if values else [])


def parse_rewards(script: GRPOScriptArguments) -> list[dict[str, Any]]:
    """Reward specs (see :func:`~.rewards.build_rewards`) from ``--reward KIND:WEIGHT``."""
    specs = []
    for item in script.reward:
        kind, _, weight = item.partition(":")
        if kind not in REWARD_KINDS:
            raise ValueError(f"--reward {item}: kind {kind!r} unknown; expected one of "
                             f"{', '.join(REWARD_KINDS)}")  # fmt: skip
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--reward {item}: weight {weight!r} is not a number") from None
        if kind == "judge":
            if not script.judge_base_url or not script.judge_model:
                raise ValueError("--reward judge needs --judge_base_url and --judge_model")
            specs.append(
                {
                    "type": "vlm_judge",
                    "weight": value,
                    "base_url": script.judge_base_url,
                    "model": script.judge_model,
                    "mode": script.judge_mode,
                    "api_key_env": script.judge_api_key_env,
                    "max_concurrency": script.judge_concurrency,
                    "timeout_s": script.judge_timeout,
                    "extra_body": json_object(script.judge_extra_body, "--judge_extra_body"),
                }
            )
        elif kind == "local_judge":
            if not script.local_judge_model:
                raise ValueError("--reward local_judge needs --local_judge_model")
            specs.append(
                {
                    "type": "transformers_judge",
                    "weight": value,
                    "model_path": script.local_judge_model,
                    "mode": script.judge_mode,
                }
            )
        else:
            spec: dict[str, Any] = {"type": "clip", "weight": value}
            if script.clip_model:
                spec["model_name"] = script.clip_model
            if script.clip_pretrained:
                spec["pretrained"] = script.clip_pretrained
            specs.append(spec)
    if not specs:
        raise ValueError("no reward: pass --reward KIND:WEIGHT")
    return specs


def _read_jsonl(path: Path, column: str) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected an object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _flat(value: Any) -> Any:
    """Scalars as they are; nested values (GenEval's include/exclude lists) as JSON text,
    since their shapes differ between rows and a table column needs one type."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False)


def load_prompts(source: str, split: str = "train", column: str = "prompt", limit=None):
    """The RL prompts as a ``datasets.Dataset`` with a ``prompt`` column (other columns are
    kept: reward functions receive them). JSONL rows with a ``split`` field (``forge
    prompts`` writes train/val) are filtered to ``split``; for a dataset, ``split`` names
    its split. Empty or non-text prompts are errors that name the row."""
    import datasets

    path = Path(source)
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise ValueError(f"{source}: expected a .jsonl file of prompts")
        rows = _read_jsonl(path, column)
        if not rows:
            raise ValueError(f"{source}: no prompts")
        if any("split" in row for row in rows):
            rows = [row for row in rows if row.get("split") == split]
            if not rows:
                raise ValueError(f"{source}: no row has split {split!r} (--prompts_split)")
        keys = list(dict.fromkeys(k for row in rows for k in row))
        table = datasets.Dataset.from_dict({k: [_flat(row.get(k)) for row in rows] for k in keys})
    elif path.is_dir() and any((path / n).exists() for n in ("dataset_dict.json", "state.json")):
        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            table = table[split]
    else:
        table = datasets.load_dataset(str(source), split=split)
    if column not in table.column_names:
        raise ValueError(
            f"{source}: no {column!r} column (columns: {', '.join(table.column_names)}); "
            "pass --prompt_column"
        )
    if column != "prompt":
        if "prompt" in table.column_names:
            table = table.remove_columns("prompt")
        table = table.rename_column(column, "prompt")
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    for index, prompt in enumerate(table["prompt"]):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{source}: row {index}: prompt is {prompt!r}, expected text")
    return table


class TrackerCallback(TrainerCallback):
    """Sends the trainer's logged scalars to a :class:`~.track.Tracker` (main process)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.tracker.log(logs, step=state.global_step)


def run_grpo(script: GRPOScriptArguments, args: JanusGRPOConfig) -> JanusGRPOTrainer:
    """Train and save; returns the trainer."""
    from accelerate import PartialState

    from .track import Tracker

    reward = trl_reward(build_rewards(parse_rewards(script)))
    prompts = load_prompts(script.prompts, script.prompts_split, script.prompt_column,
                           script.max_prompts)  # fmt: skip
    state = PartialState()
    bundle = load_janus(script.model, device=state.device)
    tracker = None
    if state.is_main_process:
        backends = script.trackers if script.trackers in ("auto", "none") else [
            b.strip() for b in script.trackers.split(",") if b.strip()
        ]  # fmt: skip
        tracker = Tracker(
            args.output_dir,
            backends=backends,
            image_every=max(1, args.image_log_steps or 1),
            config={**args.to_dict(), "model": script.model, "prompts": script.prompts},
        )
    trainer = JanusGRPOTrainer(
        bundle,
        [reward],
        args,
        train_dataset=prompts,
        callbacks=[TrackerCallback(tracker)] if tracker else None,
        tracker=tracker,
    )
    try:
        trainer.train()
        trainer.save_model(args.output_dir)
        if state.is_main_process:
            bundle.processor.save_pretrained(args.output_dir)
    finally:
        if tracker is not None:
            tracker.close()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    summary = {
        "prompts": len(prompts),
        "steps": trainer.state.global_step,
        "first reward": f"{rewards[0]:.4f}" if rewards else "-",
        "last reward": f"{rewards[-1]:.4f}" if rewards else "-",
        "saved to": args.output_dir,
    }
    if state.is_main_process:
        console.print(summary_table("GRPO", list(summary.items())))
    return trainer
