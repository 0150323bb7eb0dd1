"""Stage one: teach Janus-Pro to write the rationale, then draw.

    python train/sft.py --model deepseek-community/Janus-Pro-1B --dataset DATASET_DIR \
        --config train/recipes/sft_janus_pro.yaml --output_dir runs/sft

Script flags (--dataset, --prompt_styles, --condition_dropout, loss weights ...) are in
rationale_forge.training.sft.SFTScriptArguments; every TRL SFTConfig / TrainingArguments flag
works too (--learning_rate, --per_device_train_batch_size, --bf16 ...). `--help` lists all.
"""

import sys

from trl import SFTConfig, TrlParser

from rationale_forge.training.entry import cpu_safe_argv, run_main
from rationale_forge.training.sft import SFTScriptArguments, run_sft


def main() -> None:
    parser = TrlParser((SFTScriptArguments, SFTConfig))
    argv = cpu_safe_argv(sys.argv[1:])
    script_args, training_args = parser.parse_args_and_config(args=argv)
    run_sft(script_args, training_args)


if __name__ == "__main__":
    run_main(main)
