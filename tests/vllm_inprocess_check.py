"""Run by ``.venv-vllm``'s Python (tests/test_vllm_inprocess.py): the in-process vLLM
backend answers four concurrent requests in batches; prints one JSON line per result."""

import asyncio
import json
import sys

from rationale_forge.vlm.base import VLMRequest
from rationale_forge.vlm.vllm_backend import VLLMBackend


def main() -> None:
    model_dir, image_path = sys.argv[1], sys.argv[2]
    backend = VLLMBackend(
        model_dir,
        batch_size=4,
        temperature=1.0,
        max_tokens=3000,
        seed=1,
        enforce_eager=True,
        max_model_len=4096,
        # a random model pads JSON with whitespace unless the grammar forbids it
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
    )
    image = open(image_path, "rb").read()

    async def run():
        requests = [VLMRequest(f"k{i}", f"Plan picture {i} as JSON.", image) for i in range(4)]
        results = await asyncio.gather(*(backend.complete(r) for r in requests))
        await backend.aclose()
        return results

    for result in asyncio.run(run()):
        print(json.dumps(result.to_dict()), flush=True)


if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
