"""Unit tests of the vLLM simulator."""
