"""Every command answers --help with examples (argparse formats help lazily: a stray % would only fail here)."""

from __future__ import annotations

import contextlib
import io

import pytest

from f2b_study.cli import COMMANDS, build_parser, main


def test_every_listed_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "examples:" in out.getvalue()
