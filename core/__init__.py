"""The ground floor: models, data, degradations, metrics, image I/O and tiling.

Everything above (the stages `compress`, `distill`, `export` and the application in `adcsr`)
imports from here; nothing here imports from above.
"""

from . import quiet as _quiet

_quiet.install()
