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


def test_python_m_behaves_as_the_console_script(tmp_path):
    import os
    import subprocess
    import sys

    from ..conftest import zoo
    script = os.path.join(os.path.dirname(sys.executable), "nsys-doctor")
    if not os.path.exists(script):
        pytest.skip("the console script is not installed next to this Python")
    path = str(zoo("sync_heavy"))
    for args, code in (([path, "--format", "json"], 0), ([str(tmp_path / "missing.sqlite")], 2)):
        a = subprocess.run([script, "analyze", *args], capture_output=True, text=True)
        b = subprocess.run([sys.executable, "-m", "nsys_doctor", "analyze", *args], capture_output=True, text=True)
        assert a.returncode == b.returncode == code
        assert a.stdout == b.stdout and a.stderr == b.stderr
