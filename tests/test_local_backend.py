"""The transformers backend on a tiny random Qwen2-VL: constrained decoding always yields
schema-valid objects; model resolution errors say what to do."""

from __future__ import annotations

import asyncio

import pytest

from rationale_forge.generate import GenerateConfig, encode_for_request, generate
from rationale_forge.rationale import LIST_FIELDS, Rationale
from rationale_forge.sources import SourceOptions
from rationale_forge.store import RunDir
from rationale_forge.vlm.base import VLMRequest
from rationale_forge.vlm.constrained import LIST_ITEMS, skeleton
from rationale_forge.vlm.errors import ModelUnavailableError
from rationale_forge.vlm.local import resolve_model


def test_generate_with_a_tiny_random_qwen2_vl_gives_valid_objects(tmp_path, tiny_qwen):
    out = tmp_path / "gen"
    stats = generate(
        SourceOptions(kind="sample", limit=5),
        str(out),
        GenerateConfig(
            backend="transformers", model=str(tiny_qwen), batch_size=2, max_tokens=200, n_variants=2
        ),
        progress=False,
    )
    assert stats.rows == stats.ok == 5 and stats.requests == 5
    for row in RunDir(str(out)).iter_rows():
        obj = Rationale.model_validate({k: row[k] for k in Rationale.model_fields})
        assert obj.rationale and obj.short_caption
        assert len(obj.paraphrases) == len(obj.varied_captions) == 2
        assert len(obj.object_prompts) == LIST_ITEMS["object_prompts"]
        assert row["backend"] == "transformers" and row["completion_tokens"] > 0
        assert row["finish_reason"] == "stop"


def test_batches_gather_concurrent_requests(tiny_qwen, monkeypatch):
    from rationale_forge.vlm.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(tiny_qwen), batch_size=3, max_tokens=120)
    sizes = []
    real = backend._generate
    monkeypatch.setattr(backend, "_generate", lambda reqs: sizes.append(len(reqs)) or real(reqs))
    from rationale_forge.sources import sample_dir

    image = encode_for_request(open(f"{sample_dir()}/sample/000000000001.jpg", "rb").read(), 64)
    requests = [VLMRequest(key=str(i), prompt=f"describe {i}", image=image) for i in range(5)]

    async def run():
        results = await asyncio.gather(*(backend.complete(r) for r in requests))
        await backend.aclose()
        return results

    results = asyncio.run(run())
    assert [r.key for r in results] == [str(i) for i in range(5)]
    assert sizes == [3, 2] and all(r.ok for r in results)


def test_skeleton_scales_budgets_and_variant_counts():
    small, large = skeleton(300, 2), skeleton(3000, 5)
    assert sum(s.budget or 0 for s in small) < sum(s.budget or 0 for s in large)
    literal = "".join(s.literal for s in small)
    for name in LIST_FIELDS:
        assert f'"{name}": ["' in literal
    assert small[-1].budget is None and small[-1].literal.endswith("}")


def test_missing_model_offline_says_exactly_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError) as exc:
        resolve_model("someone/not-cached-vlm")
    message = str(exc.value)
    assert "hf download someone/not-cached-vlm" in message and "--base-url" in message
    with pytest.raises(ModelUnavailableError, match="not a model directory"):
        resolve_model(str(tmp_path / "no-such-dir"))
