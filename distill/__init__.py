"""Training: one trainer; stage 0 (small autoencoder), stage 1 (pruned decoder pretraining) and
stage 2 (adversarial feature distillation); the baselines' own objectives (DFOSD, TSD-SR, TAD-SR).

The face: `STAGES` ({"stage0": train_autoencoder, "stage1": pretrain_decoder, "stage2": distill},
each `fn(cfg, resume=False) -> Path`, `cfg` a config object, a YAML path or a dict), their config
classes `CONFIGS` (defined with the trainer's and data's sections in `config.py`, which imports no
model code) and each function and class by name; `METHODS` ({"dfosd": train_dfosd, "tsdsr": train_tsdsr,
"tadsr": train_tadsr}) the baselines trained with their own objectives; `add_parser` the `adcsr distill` / `adcsr train`
subcommands. Imported on first use (core/faces.py).
"""

from adcsr.core.faces import lazy_face


def _stages():
    from .stage0 import train_autoencoder
    from .stage1 import pretrain_decoder
    from .stage2 import distill

    return {"stage0": train_autoencoder, "stage1": pretrain_decoder, "stage2": distill}


def _configs():
    from .config import Stage0Config, Stage1Config, Stage2Config

    return {"stage0": Stage0Config, "stage1": Stage1Config, "stage2": Stage2Config}


def _methods():
    from .dfosd import train_dfosd
    from .tadsr import train_tadsr
    from .tsdsr import train_tsdsr

    return {"dfosd": train_dfosd, "tsdsr": train_tsdsr, "tadsr": train_tadsr}


__getattr__, __all__ = lazy_face(__name__, {
    "train_autoencoder": "stage0", "Stage0Config": "config",
    "pretrain_decoder": "stage1", "Stage1Config": "config",
    "distill": "stage2", "Stage2Config": "config", "RunConfig": "config",
    "train_dfosd": "dfosd", "DFOSDConfig": "dfosd", "train_tsdsr": "tsdsr", "TSDSRConfig": "tsdsr",
    "train_tadsr": "tadsr", "TADSRConfig": "tadsr", "add_parser": "cli",
}, {"STAGES": _stages, "CONFIGS": _configs, "METHODS": _methods})
