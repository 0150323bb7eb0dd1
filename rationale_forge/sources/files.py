"""Finding input files (a file, a directory or a glob, local or any fsspec URL) and reading
bytes from paths and URLs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import fsspec
import httpx

from .base import SourceError

USER_AGENT = "rationale-forge (+https://pypi.org/project/rationale-forge/)"


def expand_files(spec: str, suffixes: tuple[str, ...], what: str) -> list[str]:
    """Files named by ``spec`` (a file, a directory searched recursively, or a glob) whose
    names end with one of ``suffixes``, sorted; protocol prefixes are kept."""
    fs, root = fsspec.core.url_to_fs(spec)
    if any(ch in root for ch in "*?["):
        found = fs.glob(root)
    elif fs.isdir(root):
        found = fs.find(root)
    elif fs.exists(root):
        found = [root]
    else:
        raise SourceError(f"{spec}: no such file or directory")
    files = sorted(p for p in found if p.lower().endswith(suffixes) and not fs.isdir(p))
    if not files:
        raise SourceError(f"{spec}: no {what} files ({', '.join(suffixes)}) found")
    return [fs.unstrip_protocol(p) if _has_protocol(spec) else p for p in files]


def _has_protocol(spec: str) -> bool:
    return "://" in spec


def read_path(path: str) -> bytes:
    with fsspec.open(path, "rb") as f:
        return f.read()


def read_local(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def path_reader(path: str) -> Callable[[], bytes]:
    """A reader for ``path``: plain ``open`` for local files (the common, hot case), fsspec
    for any other filesystem."""
    if "://" in path and not path.startswith("file://"):
        return functools.partial(read_path, path)
    return functools.partial(read_local, path.removeprefix("file://"))


@functools.lru_cache(maxsize=1)
def _http_client() -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(30.0), follow_redirects=True, headers={"User-Agent": USER_AGENT}
    )


def read_url(url: str) -> bytes:
    """GET ``url``; raises ``httpx.HTTPError`` on network failure or a non-2xx status."""
    response = _http_client().get(url)
    response.raise_for_status()
    return response.content


def url_reader(url: str) -> Callable[[], bytes]:
    return functools.partial(read_url, url)


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def reader_for(location: str) -> Callable[[], bytes]:
    return url_reader(location) if is_url(location) else path_reader(location)
