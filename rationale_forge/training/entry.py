"""What every ``train/*.py`` script does around its work: CPU-safe flags, clean errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..ui import console

__all__ = ["cpu_safe_argv", "run_main"]


def cpu_safe_argv(argv: list[str]) -> list[str]:
    """Turn bf16 off on a machine without CUDA, unless the command line sets it.

    The recipes ask for bf16 autocast (GPU training); transformers refuses bf16 on a CPU, so
    a recipe tried on a laptop would stop at argument parsing. Flags on the command line
    override the YAML, so appending ``--bf16 false`` is enough.
    """
    import torch

    if torch.cuda.is_available() or any(a == "--bf16" or a.startswith("--bf16=") for a in argv):
        return argv
    console.print("[yellow]no CUDA device: training in fp32 on the CPU (--bf16 false)[/]")
    return [*argv, "--bf16", "false"]


def run_main(main: Callable[[], None]) -> None:
    """Run ``main``; a bad flag, file or dataset ends with its message and exit code 2
    (``FORGE_DEBUG=1`` shows the traceback)."""
    from .data import DataError

    try:
        main()
    except (ValueError, FileNotFoundError, DataError) as err:
        if os.environ.get("FORGE_DEBUG"):
            raise
        console.print(f"[bold red]error:[/] {err}")
        console.print("(set FORGE_DEBUG=1 for the traceback)")
        sys.exit(2)
