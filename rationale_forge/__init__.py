"""rationale-forge: build 'think, then draw' rationale datasets for image generators."""

from importlib import metadata

try:
    __version__ = metadata.version("rationale-forge")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"
