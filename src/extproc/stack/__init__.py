"""Running the whole stack as real processes: simulated pods, the picker and Envoy."""
