"""Engines: how a stage's batches are fed to its core.

A stage's core is the same everywhere (``generate.Answerer``, ``filter.RowScorer`` and
``filter.Decisions``); an engine decides where it runs and how rows reach it:

- ``local`` (:mod:`.local`): this process, streaming the run through threads and one
  event loop. The default; nothing to install.
- ``ray`` (:mod:`.ray`): Ray Data over a cluster, one input shard per task, CLIP and
  local VLMs in actor pools (one per GPU). ``pip install 'rationale-forge[ray]'``.

Only :mod:`.ray` imports Ray, and only when a Ray engine is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..filter import FilterConfig, FilterStats
    from ..generate import GenerateConfig, GenerateStats
    from ..sources import SourceOptions
    from ..store import RunDir

ENGINES = ("local", "ray")


class EngineError(RuntimeError):
    """An engine could not run a stage (Ray missing, a job's worker failed, ...); the
    message says why."""


class Engine(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the engine (name, cluster size, ...)."""

    def generate(
        self, source: SourceOptions | str, out: str, config: GenerateConfig, progress: bool
    ) -> GenerateStats:
        """Run the generate stage (setup, resume, feeding, writing)."""

    def start_filter(self, run: RunDir, config: FilterConfig) -> None:
        """Get ready to filter into ``run`` (load models, join the cluster); fail early."""

    def score(self, source: RunDir, out: RunDir, config: FilterConfig, progress: bool) -> int:
        """The filter's score pass: score what is not scored yet; returns how many."""

    def decide(self, out: RunDir, config: FilterConfig, stats: FilterStats, progress: bool) -> None:
        """The filter's decide pass: every scored row to kept or rejected."""


def make_engine(
    name: str = "local", address: str | None = None, clip_actors: int | None = None
) -> Engine:
    """The engine called ``name``. ``address`` (ray): ``auto`` for a running cluster,
    ``ray://HOST:10001`` or ``HOST:6379``; none starts Ray on this machine. ``clip_actors``
    (ray): CLIP model replicas (default: one per GPU, or one per two CPUs)."""
    if name == "local":
        from .local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from .ray import RayEngine

        return RayEngine(address=address, clip_actors=clip_actors)
    raise ValueError(f"unknown engine '{name}'; choose {' or '.join(ENGINES)}")
