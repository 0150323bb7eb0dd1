"""Corpus readers. ``SOURCES`` maps each ``--source`` kind to its reader."""

from __future__ import annotations

from importlib import resources

from .base import Flag, Source, SourceError, SourceItem, SourceOptions, select
from .coco import CocoSource
from .folder import FolderSource
from .hf import HFSource
from .tables import JsonlSource, ParquetSource
from .webdataset import WebDatasetSource


def sample_dir() -> str:
    """The built-in sample corpus (COCO layout, split ``sample``) shipped in the package."""
    return str(resources.files("rationale_forge") / "sample" / "data")


class SampleSource(CocoSource):
    kind = "sample"
    description = "the built-in sample: procedurally drawn shapes with exact COCO captions/boxes"
    flags = ()
    default_split = "sample"

    def __init__(self, options: SourceOptions):
        options.data_dir, options.split = sample_dir(), "sample"
        super().__init__(options)


SOURCES: dict[str, type[Source]] = {
    cls.kind: cls
    for cls in (
        CocoSource,
        FolderSource,
        HFSource,
        ParquetSource,
        JsonlSource,
        WebDatasetSource,
        SampleSource,
    )
}


def open_source(options: SourceOptions) -> Source:
    """The reader for ``options.kind``; raises :class:`SourceError` for an unknown kind."""
    try:
        cls = SOURCES[options.kind]
    except KeyError:
        raise SourceError(
            f"unknown source '{options.kind}'; choose one of: {', '.join(SOURCES)}"
        ) from None
    return cls(options)


__all__ = [
    "SOURCES",
    "Flag",
    "Source",
    "SourceError",
    "SourceItem",
    "SourceOptions",
    "open_source",
    "sample_dir",
    "select",
]
