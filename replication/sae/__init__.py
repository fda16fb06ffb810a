"""The SAE layer: the sparse autoencoder, its training data and loop, the tie order (torch, no model)."""
