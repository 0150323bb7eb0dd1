"""The real generator and judge behind an evaluation: a Janus-Pro checkpoint sampled with
:func:`rationale_forge.training.sampling.generate_samples`, and a VLM judge behind an
OpenAI-compatible server (:class:`rationale_forge.training.rewards.VLMJudge`)."""

from __future__ import annotations

from typing import Any

from .run import Sampler


def sampling_config(**settings: Any) -> Any:
    """A :class:`~rationale_forge.training.sampling.SamplingConfig` (think, cfg_weight,
    seed, batch_size, temperatures, ...)."""
    from ..training.sampling import SamplingConfig

    return SamplingConfig(**settings)


def janus_sampler(model_path: str, device: str | None = None, dtype: str | None = None) -> Sampler:
    """Load the checkpoint once; the returned sampler draws ``n`` samples per prompt."""
    import torch

    from ..training.janus import load_janus
    from ..training.sampling import generate_samples

    torch_dtype = getattr(torch, dtype) if dtype else None
    bundle = load_janus(model_path, device=device, dtype=torch_dtype)

    def sample(prompts: list[str], n: int, config: Any) -> list[Any]:
        return generate_samples(bundle, prompts, n, config)

    return sample


def vlm_judge(base_url: str, model: str, mode: str = "prob", **options: Any) -> Any:
    """The VLM judge (API key, if any, from ``OPENAI_API_KEY`` or ``api_key_env``)."""
    from ..training.rewards import VLMJudge

    return VLMJudge(base_url, model, mode=mode, **options)
