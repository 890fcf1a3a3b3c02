"""The ext_proc gRPC server: per-stream processing of requests and responses."""
