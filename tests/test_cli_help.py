"""Every subcommand's --help ends with examples and shows its options' defaults."""

from __future__ import annotations

import argparse

from adcsr.cli import EXAMPLES, build_parser


def _leaves(parser: argparse.ArgumentParser, path: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaves(child, f"{path} {name}".strip())


def test_every_subcommand_has_examples_that_name_it_and_parse():
    parser = build_parser()
    leaves = dict(_leaves(parser))
    assert set(leaves) == set(EXAMPLES)
    for path, sub in leaves.items():
        text = sub.format_help()
        assert "examples:\n" in text, path
        lines = [ln.split("#")[0].split() for ln in EXAMPLES[path].splitlines() if f"adcsr {path}" in ln]
        assert lines, path
        for words in lines:  # each example is a valid command line for this parser
            start = words.index("adcsr") + 1
            parser.parse_args(words[start:])


def test_every_option_with_a_default_shows_it():
    for path, sub in _leaves(build_parser()):
        for action in sub._actions:
            d = action.default
            if action.option_strings and d is not None and d is not False and d != argparse.SUPPRESS \
                    and "--help" not in action.option_strings:
                assert action.help and "default" in action.help, (path, action.option_strings)
