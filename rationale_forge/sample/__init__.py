"""The built-in sample corpus (see :mod:`rationale_forge.sample.make`)."""
