"""Integration tests of the vLLM simulator (real servers on loopback)."""
