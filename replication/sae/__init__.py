"""The SAE layer: the sparse autoencoder, its training data and loop, the tie order (torch, no model)."""

CFG_NAME = "cfg.json"
"""The file an SAE's architecture is saved to, beside its weights (``SparseAutoencoder.save``)."""
WEIGHTS_NAME = "sae.safetensors"
"""The file an SAE's weights are saved to."""
