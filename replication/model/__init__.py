"""The model layer: loading offline, the converted-model cache, the memory check, hooks, batching, token states."""
