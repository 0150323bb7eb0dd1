"""What a manifest records about how a run was made: the command (secrets masked) and
the versions of the packages that shaped the output."""

from __future__ import annotations

import platform
import re
import shlex
import sys
from importlib import metadata

PACKAGES = (
    "rationale-forge",
    "pyarrow",
    "pillow",
    "datasets",
    "fsspec",
    "openai",
    "torch",
    "transformers",
    "open_clip_torch",
    "trl",
    "vllm",
    "ray",
)
SECRET_FLAG = re.compile(r"^--?[\w-]*(token|secret|password|api-key|apikey)$", re.I)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with the value of any secret-looking flag, and the credentials in any URL
    (``https://user:password@host``), replaced by ``***``."""
    argv = [_USERINFO.sub("***@", arg) for arg in argv]
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append("***")
            mask_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if SECRET_FLAG.match(flag):
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(arg)
    return out


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = "forge" if argv[0].endswith("forge") else argv[0]
    return shlex.join(redact_argv(argv))
