"""`adcsr config list | show NAME | dump NAME`: the configs that ship in the package, by name.

Wherever a command takes a config file (`adcsr pipeline CONFIG`, `adcsr distill stage1 CONFIG`,
`adcsr train dfosd CONFIG`, `--config` of `export` and `degrade`), a shipped config's name works
too: `adcsr pipeline pipeline-quality`, `adcsr distill stage1 stage1-ci`. A path that exists wins
over a name. `dump` writes the file as shipped, to start your own from (`> my.yaml`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adcsr.core.errors import UserError


def shipped() -> dict[str, Path]:
    """{name: file} for every YAML config in the package: the application's, distill's (named as
    their files) and export's (`export-<file>`)."""
    import adcsr
    import adcsr.distill
    import adcsr.export

    folders = ((Path(adcsr.__file__).parent / "configs", ""), (Path(adcsr.distill.__file__).parent / "configs", ""),
               (Path(adcsr.export.__file__).parent / "configs", "export-"))
    return {prefix + f.stem: f for folder, prefix in folders for f in sorted(folder.glob("*.yaml"))}


def resolve(spec: str | None) -> str | None:
    """A config argument as given when it names an existing file (or is None), else the shipped
    config of that name; anything else is a one-line error listing the names."""
    if spec is None or Path(spec).exists():
        return spec
    configs = shipped()
    if spec in configs:
        return str(configs[spec])
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        raise UserError(f"config file not found: {spec}")
    raise UserError(f"no config file or shipped config named {spec!r} (shipped: {', '.join(configs)})")


def _first_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("config", help="list, show or dump the configs that ship with adcsr, by name",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every shipped config: name, file, first comment line").set_defaults(func=_list)
    for action, help_ in (("show", "print a shipped config"), ("dump", "print a shipped config to start your own from")):
        s = sub.add_parser(action, help=help_)
        s.add_argument("name", help="a name from `adcsr config list`")
        s.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    configs = shipped()
    width = max(map(len, configs))
    for name, path in configs.items():
        print(f"{name:<{width}}  {_first_line(path)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    configs = shipped()
    if args.name not in configs:
        raise UserError(f"no shipped config named {args.name!r} (shipped: {', '.join(configs)})")
    sys.stdout.write(configs[args.name].read_text())
    return 0
