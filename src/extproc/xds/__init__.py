"""The xDS control plane: an ADS server feeding Envoy the pool clusters and their breakers."""

# Defaults of `extproc xds` flags; here so that the CLI can read them without importing gRPC.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POLL_INTERVAL = 0.2
