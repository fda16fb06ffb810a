"""Replication of a layer-10 sparse-autoencoder study: capture -> train -> analyze -> splice -> control -> verify ->
report; ``replication.api`` is its Python API."""

__version__ = "0.1.0"
