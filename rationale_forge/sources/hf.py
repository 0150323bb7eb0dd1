"""A Hugging Face dataset, by Hub name or local path (a dataset repository folder, or a
folder written by ``save_to_disk``); ``--streaming`` reads large sets without a full
download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Flag, Source, SourceError, SourceItem
from .files import reader_for
from .tables import CAPTION_COLUMNS, _captions


class HFSource(Source):
    kind = "hf"
    description = "a Hugging Face dataset (Hub name or local path), optionally streamed"
    flags = (
        Flag("dataset", "Hub dataset name or local path", required=True),
        Flag("split", "split to read (default train)"),
        Flag("image_column", "image column (default: the first Image feature)"),
        Flag(
            "caption_column",
            "caption column (default: first of " + ", ".join(CAPTION_COLUMNS) + ")",
        ),
        Flag("streaming", "stream instead of downloading the whole split"),
    )

    def __init__(self, options):
        super().__init__(options)
        self.split = options.split or "train"
        self.ds = self._open()
        features = self.ds.features or {}
        self.image_column = options.image_column or next(
            (name for name, f in features.items() if type(f).__name__ == "Image"), None
        )
        if self.image_column is None or self.image_column not in features:
            raise SourceError(
                f"{options.dataset}: no image column "
                f"{'named ' + repr(options.image_column) if options.image_column else 'found'} "
                f"(columns: {', '.join(features)}); pass --image-column"
            )
        if options.caption_column and options.caption_column not in features:
            raise SourceError(f"{options.dataset}: no column '{options.caption_column}'")
        self.caption_column = options.caption_column or next(
            (c for c in CAPTION_COLUMNS if c in features), None
        )
        if type(features[self.image_column]).__name__ == "Image":
            from datasets import Image

            # Keep the original bytes: no decode to PIL, no re-encode.
            self.ds = self.ds.cast_column(self.image_column, Image(decode=False))

    def _open(self):
        import datasets

        name = self.options.dataset
        try:
            if Path(name).is_dir() and (Path(name) / "state.json").exists():
                return datasets.load_from_disk(name)
            if Path(name).is_dir() and (Path(name) / "dataset_dict.json").exists():
                return datasets.load_from_disk(name)[self.split]
            if not Path(name).exists():  # a Hub name: fail fast when the Hub is unreachable
                from ..vlm.local import go_offline_if_unreachable

                go_offline_if_unreachable()
            return datasets.load_dataset(name, split=self.split, streaming=self.options.streaming)
        except (FileNotFoundError, ValueError, KeyError, ConnectionError) as exc:
            raise SourceError(self._cannot_open(name, exc)) from exc
        except Exception as exc:  # datasets raises many kinds (DatasetNotFoundError, hub errors)
            raise SourceError(self._cannot_open(name, exc)) from exc

    def _cannot_open(self, name: str, exc: Exception) -> str:
        hint = (
            ""
            if Path(name).exists()
            else (
                f". Offline? Download it where there is internet (`hf download {name} "
                f"--repo-type dataset`) and pass its local folder to --dataset"
            )
        )
        return f"cannot open dataset '{name}' split '{self.split}': {exc}{hint}"

    def count(self) -> int | None:
        try:
            return len(self.ds)
        except TypeError:  # streaming
            return None

    def items(self) -> Iterator[SourceItem]:
        for index, row in enumerate(self.ds):
            yield self._item(index, row)

    def _item(self, index: int, row: dict[str, Any]) -> SourceItem:
        value = row.get(self.image_column)
        item = SourceItem(key=f"{self.split}/{index}", meta={"index": index})
        if self.caption_column:
            item.captions = _captions(row.get(self.caption_column))
        if isinstance(value, dict):
            item.data, item.path = value.get("bytes"), value.get("path")
            if item.data is None and item.path:
                item.read = reader_for(item.path)
        elif isinstance(value, (bytes, bytearray)):
            item.data = bytes(value)
        elif isinstance(value, str) and value:
            item.path, item.read = value, reader_for(value)
        return item
