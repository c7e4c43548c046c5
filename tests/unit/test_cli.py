"""The ``jobtrigger`` command line: every flag of every subcommand has a help text, the controller's show their
default and environment variable, ``--version`` prints the installed version."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import version
from typing import Any
from unittest import mock

import pytest

from jobtrigger import cli


def parsers() -> dict[str, argparse.ArgumentParser]:
    """subcommand -> its parser ("" = the top level), captured from cli.main without running anything."""
    captured: dict[str, argparse.ArgumentParser] = {}

    def capture(self: argparse.ArgumentParser, *a: Any, **k: Any) -> argparse.Namespace:
        captured[""] = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                captured.update(action.choices)
        raise SystemExit(0)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), pytest.raises(SystemExit):
        cli.main([])
    return captured


def test_every_flag_of_every_subcommand_has_help() -> None:
    found = parsers()
    assert set(found) == {"", "controller", "crd", "run", "demo"}
    for name, parser in found.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"jobtrigger {name} {action.option_strings or action.dest}"


def test_controller_help_shows_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in list(__import__("os").environ) if v.startswith("JOBTRIGGER_")]:
        monkeypatch.delenv(var)
    controller = parsers()["controller"]
    text = controller.format_help()
    flags = [a for a in controller._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 15
    for action in flags:
        flag = action.option_strings[-1]
        assert action.help is not None
        assert "%(default)s" in controller._get_formatter()._get_help_string(action), flag  # type: ignore[attr-defined]
        assert re.search(r"\[env JOBTRIGGER_[A-Z_]+(=true)?\]|\(no env\)|\$KUBECONFIG", action.help), (
            f"{flag}: say which environment variable sets it (or that none does)"
        )
    squashed = " ".join(text.split())
    assert (
        "--workers WORKERS worker tasks evaluating JobTriggers in parallel; a sync mostly waits for the API server, so "
        "more workers than cores keep the queue short [env JOBTRIGGER_WORKERS] (default: 16)" in squashed
    )
    assert "(default: 0.0.0.0:8080)" in squashed and "(default: json)" in squashed


def test_env_sets_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTRIGGER_WORKERS", "9")
    monkeypatch.setenv("JOBTRIGGER_LEADER_ELECT", "true")
    args = parsers()["controller"].parse_args([])
    assert args.workers == 9 and args.leader_elect is True
    assert "(default: 9)" in " ".join(parsers()["controller"].format_help().split())


def test_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "jobtrigger.cli", "--version"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"jobtrigger {version('jobtrigger')}"


@pytest.mark.parametrize("mode", ["--shards", "--leader-elect"])
@pytest.mark.parametrize(
    "timings", [["--lease-duration", "10", "--renew-deadline", "10"], ["--renew-deadline", "3", "--retry-period", "3"]]
)
def test_lease_timings_out_of_order_are_refused(mode: str, timings: list[str]) -> None:
    """A holder must stop at its renew deadline before its Lease can expire: refused before anything starts."""
    r = subprocess.run(
        [sys.executable, "-m", "jobtrigger.cli", "controller", mode, *timings],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "--lease-duration must be greater than --renew-deadline, and that greater than --retry-period" in r.stderr
