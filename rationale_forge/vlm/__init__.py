"""Vision-language model backends behind one interface."""
