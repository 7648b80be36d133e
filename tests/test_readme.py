"""The README's examples run as written from a checkout after `make serve`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from flashback_contract.cli import build_parser

README = (Path(__file__).parents[1] / "README.md").read_text("utf-8")


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)


def commands() -> list[str]:
    """Each shell command, continuation lines joined, comments dropped."""
    joined = "\n".join(shell_blocks()).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def test_every_example_calls_the_command_where_make_serve_puts_it() -> None:
    calls = [c for c in commands() if "flashback-contract " in c]

    assert calls
    assert [c for c in calls if not c.startswith(".venv/bin/flashback-contract ")] == []


def test_example_output_files_go_to_tmp_not_into_the_checkout() -> None:
    written = [
        target
        for command in commands()
        for target in re.findall(
            r"(?:>|-o|--report|--junit|--record)\s+(\S+)", command.split("#", 1)[0]
        )
    ]

    assert written
    assert [path for path in written if not path.startswith("/tmp/")] == []


def test_the_serve_synopsis_names_every_option() -> None:
    synopsis = README.split("```\n.venv/bin/flashback-contract serve", 1)[1].split("```", 1)[0]
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    options = [
        a.option_strings[0] for a in subparsers.choices["serve"]._actions if a.dest != "help"
    ]

    assert [option for option in options if f"[{option}" not in synopsis] == []
