"""Maintainers' pipeline: one module per stage, each reading and writing a manifest."""
