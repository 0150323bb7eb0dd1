"""Our schemas are exactly what ``datasets`` would build, so it reads every shard back with
the intended features (images as PIL, lists, structs)."""

from __future__ import annotations

import json

import datasets
import pytest

from rationale_forge import schema


def as_datasets(features) -> datasets.Features:
    """The same declaration built with the real ``datasets`` classes."""

    def convert(f):
        if isinstance(f, dict):
            return {k: convert(v) for k, v in f.items()}
        name = type(f).__name__
        if name == "Value":
            return datasets.Value(f.dtype)
        if name == "Image":
            return datasets.Image()
        return datasets.List(convert(f.feature), length=f.length or -1)

    return datasets.Features({k: convert(v) for k, v in features.items()})


@pytest.mark.parametrize("name", ["INGEST", "GENERATE", "FILTERED"])
def test_schema_matches_datasets(name):
    ours = getattr(schema, f"{name}_SCHEMA")
    theirs = as_datasets(getattr(schema, f"{name}_FEATURES"))
    assert ours.remove_metadata() == theirs.arrow_schema.remove_metadata()
    assert json.loads(ours.metadata[b"huggingface"]) == json.loads(
        theirs.arrow_schema.metadata[b"huggingface"]
    )
    assert datasets.Features.from_arrow_schema(ours) == theirs
