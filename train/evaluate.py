"""Evaluate a Janus-Pro checkpoint on GenEval, DPG-Bench, T2I-CompBench or a prompt list.

    python train/evaluate.py --model CKPT --bench geneval \\
        --prompts geneval/prompts/evaluation_metadata.jsonl --out runs/eval/geneval

``--help`` lists every flag; the library code is in ``rationale_forge/evaluation/``.
"""

from rationale_forge.evaluation.cli import run

if __name__ == "__main__":
    run()
