"""Finding local model weights, with an error that says what to do when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelUnavailableError

#: The embedded default: SmolVLM-256M-Instruct is a 256M-parameter VLM that runs on a
#: laptop CPU (about 1 GB of memory) and follows instructions well enough to fill the
#: rationale fields; constrained decoding guarantees valid objects regardless.
DEFAULT_LOCAL_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (``HF_ENDPOINT``) answers a TCP connection; when it does
    not, going offline at once saves the client's minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def go_offline_if_unreachable() -> None:
    """Switch huggingface_hub to offline mode (cached files only, no retries) when the Hub
    cannot be reached."""
    if not hub_reachable():
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def resolve_model(model: str) -> str:
    """A local directory holding ``model``: the path itself, the Hugging Face cache, or a
    download. Raises :class:`ModelUnavailableError` saying exactly what to do."""
    if Path(model).is_dir():
        return model
    if Path(model).exists() or model.startswith((".", "/")):
        raise ModelUnavailableError(f"{model}: not a model directory")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, local_files_only=True)
    except Exception:
        pass  # not cached: try the Hub unless told not to
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        offline = "HF_HUB_OFFLINE=1 is set"
    else:
        try:
            return snapshot_download(
                model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
            )
        except Exception as exc:  # offline, gated, unknown name, ...
            offline = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    raise ModelUnavailableError(
        f"model '{model}' is not in the local Hugging Face cache and could not be downloaded "
        f"({offline}). Either download it once where there is internet "
        f"(`hf download {model}`, then copy ~/.cache/huggingface or set "
        f"HF_HOME), pass --model /path/to/a/local/copy, or use a server: "
        f"--backend openai --base-url http://HOST:PORT/v1 --model NAME"
    )
