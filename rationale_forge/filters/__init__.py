"""Filters: CLIP scores, rule checks, image checks and dedup. Each returns scores and
reasons; the filter stage (:mod:`rationale_forge.filter`) decides keep or reject."""
