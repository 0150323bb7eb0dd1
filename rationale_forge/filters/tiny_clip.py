"""A tiny randomly initialised open_clip model, saved the way real ones are loaded (a model
config JSON plus a weights file), for tests, benchmarks and the offline demo."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_tiny_clip(out_dir: str | Path, seed: int = 0) -> tuple[str, str]:
    """Write ``tiny-clip.json`` and ``tiny-clip.bin`` under ``out_dir`` (reused when present);
    returns (config path, weights path) for ``--clip-model`` and ``--clip-pretrained``."""
    import open_clip
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, weights = out / "tiny-clip.json", out / "tiny-clip.bin"
    if config.exists() and weights.exists():
        return str(config), str(weights)
    config.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    open_clip.add_model_config(str(config))
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    tmp = weights.with_suffix(".bin.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights)
    return str(config), str(weights)
