"""Typed views of the Kubernetes-shaped objects the picker consumes."""
