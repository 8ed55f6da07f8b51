"""Structural compression: teacher UNet + VAE decoder → AdcSR student (module removal, rewiring, pruning)."""
