"""Conformance tooling for a real backend: ``check`` (schemathesis); it talks HTTP only."""
