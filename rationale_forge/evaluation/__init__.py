"""Benchmark evaluation of a text-to-image checkpoint: samples written in each benchmark's
own layout (GenEval, DPG-Bench, T2I-CompBench) so the official scorers run unchanged, a
VLM judge's score per category beside the official one, reports and run comparisons.

``train/evaluate.py`` is the command line; :func:`evaluate` the library entry point.
"""

from .benchmarks import BENCHES, BenchmarkInputError, BenchPrompt, read_prompts
from .run import EvalSettings, EvaluationError, OfficialSettings, evaluate, load_results
from .scores import aggregate_judge, compare_results

__all__ = [
    "BENCHES",
    "BenchPrompt",
    "BenchmarkInputError",
    "EvalSettings",
    "EvaluationError",
    "OfficialSettings",
    "aggregate_judge",
    "compare_results",
    "evaluate",
    "load_results",
    "read_prompts",
]
