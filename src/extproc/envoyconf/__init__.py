"""Envoy bootstrap configuration for the picker, built as data and written as YAML."""
