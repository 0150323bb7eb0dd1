"""Bounded, order-preserving parallel map on threads (image decoding and file reads release
the GIL, so threads give real speed-up without pickling rows)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, prefetch: int | None = None
) -> Iterator[R]:
    """Yield ``fn(item)`` in input order, with at most ``prefetch`` items in flight so memory
    stays bounded however long ``items`` is. ``workers <= 1`` runs inline."""
    if workers <= 1:
        yield from map(fn, items)
        return
    window = prefetch or workers * 4
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forge") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
