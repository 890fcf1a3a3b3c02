"""The xDS control plane: an ADS server feeding Envoy the pool clusters, their breakers and the
route with the pool's failure mode."""

# Defaults of `extproc xds` flags; here so that the CLI can read them without importing gRPC.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POLL_INTERVAL = 0.2
DEFAULT_METRICS_PORT = 9091  # the picker's is 9090: both fit on one host
