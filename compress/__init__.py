"""Structural compression: teacher UNet + VAE decoder → AdcSR student (module removal, rewiring,
pruning).

The face: `compress(unet, vae, out, cfg)` writes the student, the pruned decoder and the
params/MACs report; `CompressConfig` its settings; `load_teacher(source)` the SD UNet + VAE;
`from_teacher(unet, vae, ratios, criterion)` the models in memory; `add_parser` the
`adcsr compress` subcommand. Imported on first use.
"""

from adcsr.core.faces import lazy_face

__getattr__, __all__ = lazy_face(__name__, {
    "compress": "api", "CompressConfig": "config", "load_teacher": "sd_teacher",
    "from_teacher": "from_teacher", "Ratios": "from_teacher", "add_parser": "cli",
})
