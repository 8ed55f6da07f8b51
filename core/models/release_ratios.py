"""The AdcSR release's channel-pruning ratios, defined once: compress's defaults and the width of
a fresh stage-1 decoder read them from here (no model code, so configs can import it cheaply)."""

UNET_RATIO = 0.25  # fraction of the UNet's channels removed
DECODER_RATIO = 0.5  # fraction of every VAE-decoder width removed
