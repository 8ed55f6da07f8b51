"""`adcsr distill stage0|stage1|stage2 CONFIG [--resume]` and `adcsr train dfosd|tsdsr|tadsr CONFIG [--resume]`.

Multi-process: `accelerate launch -m adcsr.cli distill stage2 CONFIG` or
`torchrun --nproc_per_node N -m adcsr.cli distill stage2 CONFIG`.
"""

from __future__ import annotations

import argparse

HELP = {
    "stage0": "train the small KL autoencoder (stands in for SD's VAE)",
    "stage1": "pretrain the pruned VAE decoder",
    "stage2": "adversarial feature distillation of the student",
}


def _run(args: argparse.Namespace) -> int:
    from adcsr.distill import STAGES

    out = STAGES[args.stage](args.config, resume=args.resume)
    print(out)
    return 0


METHOD_HELP = {
    "dfosd": "DFOSD's own objective: noise-aware discriminator + MSE + EA-DISTS (no teacher)",
    "tsdsr": "TSD-SR's target score distillation from SD3 (VSD + target score matching, DASM, CFG)",
    "tadsr": "TAD-SR's time-aware distillation of ResShift (regression to 15 steps, HSD, time-aware discriminator)",
}


def _run_method(args: argparse.Namespace) -> int:
    from adcsr.distill import METHODS

    print(METHODS[args.method](args.config, resume=args.resume))
    return 0


def _commands(parent, dest: str, metavar: str, helps: dict[str, str], func) -> None:
    """One subcommand per name, each taking a config and --resume."""
    sub = parent.add_subparsers(dest=dest, metavar=metavar, required=True)
    for name, help_ in helps.items():
        s = sub.add_parser(name, help=help_)
        s.add_argument("config", help="YAML config, or a shipped config's name (adcsr config list)")
        s.add_argument("--resume", action="store_true",
                       help="continue from the newest good checkpoint in the config's run_dir")
        s.set_defaults(func=func)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("distill", help="train: stage 0 autoencoder, stage 1 decoder, stage 2 distillation",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _commands(p, "stage", "STAGE", HELP, _run)
    t = subparsers.add_parser("train", help="train a baseline method with its own objective (DFOSD, TSD-SR, TAD-SR)",
                              description="Train one of the papers' methods with its own training objective, on "
                              "the shared trainer (resume, multi-process, AMP as the distillation stages).")
    _commands(t, "method", "METHOD", METHOD_HELP, _run_method)
