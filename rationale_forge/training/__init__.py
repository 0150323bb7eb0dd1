"""Training: Janus-Pro SFT and GRPO on TRL."""
