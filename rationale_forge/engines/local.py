"""The local engine: the whole run in this process (threads for image work, one event
loop for requests). The stages' streaming loops live beside their cores, in
``generate.py`` and ``filter.py``; this names them as an engine."""

from __future__ import annotations

from typing import Any

from ..filter import FilterConfig, FilterStats, decide_pass, load_clip, score_pass
from ..filters.clip import ClipScorer
from ..generate import GenerateConfig, GenerateStats, generate_local
from ..sources import SourceOptions
from ..store import RunDir


class LocalEngine:
    name = "local"

    def __init__(self) -> None:
        self._clip: ClipScorer | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def generate(
        self, source: SourceOptions | str, out: str, config: GenerateConfig, progress: bool
    ) -> GenerateStats:
        return generate_local(source, out, config, progress)

    def start_filter(self, run: RunDir, config: FilterConfig) -> None:
        self._clip = load_clip(config)

    def score(self, source: RunDir, out: RunDir, config: FilterConfig, progress: bool) -> int:
        return score_pass(source, out, config, self._clip, progress)

    def decide(self, out: RunDir, config: FilterConfig, stats: FilterStats, progress: bool) -> None:
        decide_pass(out, config, stats, progress)
