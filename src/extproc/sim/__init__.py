"""A vLLM simulator: many pods in one process, each with a continuous-batching engine model."""
