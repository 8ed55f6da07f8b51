"""The ground floor: models, data, degradations, metrics, image I/O and tiling.

Everything above (the stages `compress`, `distill`, `export` and the application in `adcsr`)
imports from here; nothing here imports from above.
"""

import logging as _logging

# torchao (pulled in by executorch) logs load failures of CUDA-only kernels at import, and
# diffusers warns that it cannot register torchao tensor types, and the ONNX exporter notes that
# torchvision (deliberately absent) is missing; none of it matters to this project,
# and users should not see them on every command.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers", "torch.onnx._internal.exporter._registration"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
