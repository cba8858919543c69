"""Every flag of every `certnn` subcommand has help text, and each help states its default at most once."""
from __future__ import annotations

import argparse

import pytest

from certnn.cli.main import SUBCOMMANDS, build_parser


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_flag_has_help(name):
    sub = _subparsers()[name]
    missing = [a.option_strings[0] for a in sub._actions if a.option_strings and not a.help]
    assert not missing, f"certnn {name}: flags without help: {missing}"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_states_a_default_at_most_once(name):
    sub = _subparsers()[name]
    fmt = sub._get_formatter()
    for a in sub._actions:
        if not a.option_strings or a.help in (None, argparse.SUPPRESS):
            continue
        text = fmt._get_help_string(a).lower().replace("%(default)s", "x")
        assert text.count("default") <= 1, f"certnn {name} {a.option_strings[0]}: {text!r}"
        assert "(default: none)" not in text and "(default: false)" not in text


def test_help_of_every_subcommand_renders():
    for name, sub in _subparsers().items():
        assert sub.format_help().startswith("usage: certnn " + name)
