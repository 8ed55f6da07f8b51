"""Training: one trainer; stage 0 (small autoencoder), stage 1 (pruned decoder pretraining) and
stage 2 (adversarial feature distillation).

`train_autoencoder(cfg) -> Path`, `pretrain_decoder(cfg) -> Path`, `distill(cfg) -> Path` (each
also takes `resume=`) are imported on first use, so `import adcsr.distill` stays light.
"""

_PUBLIC = {
    "train_autoencoder": "stage0", "Stage0Config": "stage0",
    "pretrain_decoder": "stage1", "Stage1Config": "stage1",
    "distill": "stage2", "Stage2Config": "stage2",
    "Trainer": "trainer", "Task": "trainer", "Phase": "trainer",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
