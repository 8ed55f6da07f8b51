"""Training: one trainer; stage 1 (pruned decoder pretraining) and stage 2 (adversarial feature distillation)."""
