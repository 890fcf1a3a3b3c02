"""Kubernetes integration: InferencePool/Pod/InferenceModel watchers and Lease leader election."""
