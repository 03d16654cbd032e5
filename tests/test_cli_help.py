"""Every command explains itself: `cs336-exp --help` lists every command, every command and
option has help text, and each option's help shows its default."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from cs336_basics.cli import build_parser, main
from cs336_basics.core.row import AXES


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


EVERY_COMMAND = [
    "list",
    "show",
    "compare",
    "best",
    "export",
    "plot",
    "report",
    "sweep",
    "pull",
    "import",
    "push",
    "serve",
    "tag",
    "note",
    "rename",
    "delete",
    "restore",
    "diff",
]


def test_top_level_help_lists_every_command(capsys):
    parser = build_parser()
    assert sorted(subcommands(parser)) == sorted(EVERY_COMMAND)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    listed = parser.description.split("Commands: ")[1].rstrip(".").split(", ")
    assert listed == EVERY_COMMAND  # the description names every command
    for name in EVERY_COMMAND:
        assert re.search(rf"\n    {name} +\S", text), name  # its own line, with its help


def test_every_command_and_option_has_help_with_its_default():
    parser = build_parser()
    helps = command_help(parser)
    for name, sub in subcommands(parser).items():
        assert helps[name].strip(), f"{name}: no help"
        rendered = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"{name} {label}: no help"
            if not action.option_strings:
                continue
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if action.required or flag:
                continue
            # The rendered line says the default, in words or as "(default: X)".
            formatter = sub._get_formatter()
            shown = formatter._get_help_string(action) % {**vars(action), "prog": sub.prog}
            assert "default" in shown, f"{name} {label}: help does not say its default: {shown!r}"
            if action.default not in (None, False, []):
                assert str(action.default) in shown, f"{name} {label}: {shown!r}"
        assert "--log-dir DIR" in rendered and "experiment_logs" in rendered


def test_plot_x_choices_are_the_axes_table():
    plot = subcommands(build_parser())["plot"]
    (x,) = [a for a in plot._actions if "--x" in a.option_strings]
    assert list(x.choices) == list(AXES)
    assert plot.parse_args(["r", "-o", "x.png", "--x", "wallclock_time"]).x == "wallclock"


def test_plot_needs_an_output_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plot", "lr_*"])
    assert info.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


def test_command_line_imports_no_plotting_or_wandb():
    code = (
        "import sys; from cs336_basics.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'wandb', 'torch', 'pandas')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_python_dash_m_shows_the_same_help():
    proc = subprocess.run(
        [sys.executable, "-m", "cs336_basics", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: cs336-exp ")
    assert "serve" in proc.stdout and "best" in proc.stdout and "show" in proc.stdout
