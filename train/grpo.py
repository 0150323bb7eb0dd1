"""Stage two: GRPO on the SFT checkpoint, rewarded by a VLM judge (ReasonGen-R1).

    python train/grpo.py --model runs/sft --prompts prompts.jsonl \\
        --judge_base_url http://localhost:8000/v1 --judge_model Qwen/Qwen2.5-VL-7B-Instruct \\
        --config train/recipes/grpo_janus_pro.yaml --output_dir runs/grpo

Rewards: ``--reward judge:1.0 --reward clip:0.5`` (kinds: judge, local_judge, clip). Script
flags are in rationale_forge.training.grpo.GRPOScriptArguments; the rollout and loss flags
(--cfg_mode, --max_rationale_tokens, --dynamic_sampling, --entropy_control,
--text_image_balance ...) in rationale_forge.training.grpo_trainer.JanusGRPOConfig, with every
TRL GRPOConfig flag (--num_generations, --learning_rate, --beta, --epsilon, --loss_type ...).
`--help` lists all.
"""

import os
import sys

from trl import TrlParser

from rationale_forge.training.entry import cpu_safe_argv, run_main
from rationale_forge.training.grpo import GRPOScriptArguments, merge_repeated_flag, run_grpo
from rationale_forge.training.grpo_trainer import JanusGRPOConfig


def main() -> None:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is TRL-experimental
    parser = TrlParser((GRPOScriptArguments, JanusGRPOConfig))
    argv = cpu_safe_argv(merge_repeated_flag(sys.argv[1:], "--reward"))
    script_args, training_args = parser.parse_args_and_config(args=argv)
    run_grpo(script_args, training_args)


if __name__ == "__main__":
    run_main(main)
