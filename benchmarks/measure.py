"""Run a command and measure it: wall seconds, CPU seconds and peak RSS of that process.

Peak RSS comes from ``VmHWM`` in ``/proc/PID/status`` (the high-water mark since ``exec``),
polled every 20 ms. ``ru_maxrss`` from ``wait4`` is not used for memory: it survives
``exec`` and so reports the *parent's* size at the moment of the fork when the benchmark
process itself is large (seen here: 2 GB reported for a 350 MB child).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    wall: float
    cpu: float
    peak_rss_mb: float


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> Measured:
    """Run ``cmd`` with output to ``log``; raise SystemExit with the log tail on failure."""
    start = time.perf_counter()
    peak = 0
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _hwm_kb(proc.pid) or 0)
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}); see {log}:\n"
            f"{log.read_text(errors='replace')[-3000:]}"
        )
    return Measured(wall=wall, cpu=usage.ru_utime + usage.ru_stime, peak_rss_mb=peak / 1024)
