"""The architecture holds: pyproject.toml's import contracts (no import cycles, layers import downward,
negotiation never imports analytics, the engine and the metrics stay pure), checked as `make lint` does.

A forbidden import anywhere in mams/, negotiation/ or analytics/ (a function-local one included) fails
this test, with import-linter's report of which import breaks which contract."""

from __future__ import annotations

import os
from pathlib import Path

from importlinter import cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept(capsys):
    # given the contracts in pyproject.toml, when import-linter checks the tree
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)
    # then none is broken
    assert code == 0, capsys.readouterr().out[-4000:]
