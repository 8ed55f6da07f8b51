"""Teachers: one interface (`upscale`, `features`), a registry by name, and the models behind it."""
