"""Choosing an endpoint for a request."""
