"""adcsr-mobile: turn a one-step diffusion super-resolution teacher into a phone model.

`adcsr.core` is the ground floor; `adcsr.compress`, `adcsr.distill` and `adcsr.export` are the
stages; this package holds the application on top (CLI, pipeline, report, bench, upscale).
"""

__version__ = "0.1.0"
