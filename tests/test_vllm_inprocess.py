"""The in-process vLLM backend, run with the CPU build of vLLM (``.venv-vllm``) on a tiny
random Qwen2-VL: batched requests come back as schema-valid answers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from vllm_server import ensure_vllm_venv

from rationale_forge.rationale import parse
from rationale_forge.sources import sample_dir
from rationale_forge.vlm.tiny import build_tiny_qwen2_vl

REPO = Path(__file__).resolve().parents[1]


def test_in_process_vllm_backend_gives_valid_answers(tmp_path):
    python = ensure_vllm_venv()
    model = build_tiny_qwen2_vl(tmp_path / "model")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        [
            str(python),
            str(REPO / "tests" / "vllm_inprocess_check.py"),
            str(model),
            f"{sample_dir()}/sample/000000000001.jpg",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["key"] for r in results] == ["k0", "k1", "k2", "k3"]
    for r in results:
        assert r["error_kind"] is None and r["finish_reason"] == "stop", r
        parse(r["text"])  # schema-valid: the bounded grammar always closes the object
        assert r["completion_tokens"] > 0 and r["prompt_tokens"] > 0
