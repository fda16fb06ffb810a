"""Replication of a layer-10 sparse-autoencoder study: capture -> train -> analyze."""

__version__ = "0.1.0"
