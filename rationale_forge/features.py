"""A small stand-in for ``datasets.Features`` (Value, List, Image): each feature knows its
Arrow type and the JSON that ``datasets`` expects in the Parquet ``huggingface`` metadata.

Importing ``datasets`` costs most of a second (it pulls pandas and more) in every command;
these few lines give the same schemas without it. ``tests/test_schema.py`` checks that
``datasets`` reads them back as the intended features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

_ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "binary": pa.binary(),
}


@dataclass(frozen=True)
class Value:
    dtype: str

    def arrow(self) -> pa.DataType:
        return _ARROW[self.dtype]

    def hf(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "_type": "Value"}


@dataclass(frozen=True)
class Image:
    def arrow(self) -> pa.DataType:
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])

    def hf(self) -> dict[str, Any]:
        return {"_type": "Image"}


@dataclass(frozen=True)
class List:
    feature: Any  # a feature, or a dict of name -> feature (a struct)
    length: int | None = None

    def arrow(self) -> pa.DataType:
        inner = _arrow(self.feature)
        return pa.list_(inner, self.length) if self.length else pa.list_(inner)

    def hf(self) -> dict[str, Any]:
        out: dict[str, Any] = {"feature": _hf(self.feature)}
        if self.length:
            out["length"] = self.length
        out["_type"] = "List"
        return out


def _arrow(feature: Any) -> pa.DataType:
    if isinstance(feature, dict):
        return pa.struct([(name, _arrow(f)) for name, f in feature.items()])
    return feature.arrow()


def _hf(feature: Any) -> Any:
    if isinstance(feature, dict):
        return {name: _hf(f) for name, f in feature.items()}
    return feature.hf()


class Features(dict):
    """An ordered mapping of column name -> feature, with its Arrow schema."""

    @property
    def arrow_schema(self) -> pa.Schema:
        metadata = {"info": {"features": {name: _hf(f) for name, f in self.items()}}}
        return pa.schema(
            [(name, _arrow(f)) for name, f in self.items()],
            metadata={"huggingface": json.dumps(metadata)},
        )
