"""A real vLLM server (CPU build, ``.venv-vllm``) serving the tiny random Qwen2-VL.

Slow: the first run creates ``.venv-vllm`` (about 2.5 min, 3.5 GB); the server then takes
30-60 s to start. It checks the parts of the OpenAI API that the pipeline relies on:
chat completions with a base64 image part, log-probs, and ``json_schema`` structured output.
"""

from __future__ import annotations

import base64
import json

import openai
import pytest
from conftest import jpeg_bytes
from vllm_server import start_vllm_server

from rationale_forge.vlm.tiny import build_tiny_qwen2_vl

SCHEMA = {
    "type": "object",
    "properties": {
        # maxLength keeps a random model's strings short; the grammar enforces it.
        "caption": {"type": "string", "maxLength": 24},
        "style": {"type": "string", "maxLength": 24},
    },
    "required": ["caption", "style"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """One server for the module: (base_url, model name, process)."""
    model_dir = build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    # Without disable_any_whitespace (xgrammar or guidance only), the grammar lets a random
    # model pad the JSON with whitespace until max_tokens.
    so_config = {"backend": "xgrammar", "disable_any_whitespace": True}
    extra = ["--structured-outputs-config", json.dumps(so_config)]
    # enforce_eager: no torch.compile of a 2-layer model, so a cold machine starts sooner.
    with start_vllm_server(
        model_dir, enforce_eager=True, extra_args=extra, log_path=log_path, max_model_len=4096
    ) as server:
        yield server


def test_chat_with_image_logprobs_and_json_schema(vllm_server):
    base_url, model, _process = vllm_server
    client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=120, max_retries=0)
    image_url = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes()).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe the image, then think about how to draw it."},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]

    resp = client.chat.completions.create(
        model=model,
        messages=messages,
        logprobs=True,
        top_logprobs=5,
        max_tokens=8,
        temperature=0,
    )
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert resp.usage.completion_tokens == len(choice.logprobs.content) > 0
    assert resp.usage.prompt_tokens > 20  # the image's tokens are in the prompt
    for tok in choice.logprobs.content:
        assert tok.logprob <= 0
        assert len(tok.top_logprobs) == 5
        assert tok.top_logprobs[0].logprob >= tok.top_logprobs[-1].logprob

    resp = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    )
    text = resp.choices[0].message.content
    data = json.loads(text)
    assert set(data) == {"caption", "style"}
    assert all(isinstance(v, str) and len(v) <= 24 for v in data.values())


def test_forge_generate_against_the_vllm_server_gives_valid_rows(vllm_server, tmp_path):
    from rationale_forge.generate import GenerateConfig, generate
    from rationale_forge.rationale import Rationale
    from rationale_forge.sources import SourceOptions
    from rationale_forge.store import RunDir

    base_url, model, _process = vllm_server
    out = tmp_path / "gen"
    # A short prompt leaves the random model most of the 4,096-token context: with its
    # tiny vocabulary the longest answer the bounded schema allows is ~3,500 tokens.
    template = tmp_path / "short.j2"
    template.write_text("Plan this image as JSON. Captions: {{ captions | join('; ') }}")
    stats = generate(
        SourceOptions(kind="sample", limit=4),
        str(out),
        GenerateConfig(
            backend="openai",
            model=model,
            base_url=base_url,
            concurrency=4,
            max_tokens=3900,
            max_image_side=64,
            timeout=300,
            temperature=1.0,
            sampling_seed=1,  # the same answers every run
            prompt=str(template),
        ),
        progress=False,
    )
    rows = list(RunDir(str(out)).iter_rows())
    assert len(rows) == 4 and stats.requests == 4
    problems = [(r["key"], r["error_kind"], r["error"]) for r in rows if r["status"] != "ok"]
    assert not problems, problems
    for row in rows:
        Rationale.model_validate({k: row[k] for k in Rationale.model_fields})
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        assert row["finish_reason"] == "stop"
