"""Replication of a layer-10 sparse-autoencoder study: capture -> train -> analyze -> splice -> verify -> report."""

__version__ = "0.1.0"
