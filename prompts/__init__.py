"""Prompt templates, installed as ``rationale_forge.prompts`` (see pyproject.toml)."""
