"""Errors a backend raises before any request is made (configuration problems)."""


class MissingAPIKeyError(RuntimeError):
    """No API key in the environment for a server that needs one."""


class ModelUnavailableError(RuntimeError):
    """A local model that cannot be loaded (not cached and offline, wrong path, ...)."""
