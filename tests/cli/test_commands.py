"""The command registry: every name in COMMANDS is a module with its help, arguments and run; a name without its
module fails loudly instead of vanishing from the CLI."""
from __future__ import annotations

import pytest

from nsys_doctor import cli


def test_every_command_imports_with_its_contract():
    for name in cli.COMMANDS:
        mod = cli.command_module(name)
        assert (mod.__doc__ or "").strip(), f"{name} has no help text"
        assert callable(mod.add_arguments) and callable(mod.run)
    parser = cli.build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == set(cli.COMMANDS)


def test_a_misspelt_command_fails_at_once(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ["analyse"])
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser("analyse")


def test_only_the_named_command_is_built():
    parser = cli.build_parser("analyze")
    assert set(parser._subparsers._group_actions[0].choices) == {"analyze"}
