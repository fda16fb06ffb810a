"""The run directory: its layout, atomic files and manifest, provenance, a finished run read lazily."""
