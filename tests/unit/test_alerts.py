"""The chart's alert rules (charts/jobtrigger/files/alerts.yaml) through promtool: syntax, and a rule unit test
per alert that shows it firing on the failure it is meant for and staying silent otherwise.

promtool (Debian's prometheus package, 2.42) is unpacked into ``.tools/bin`` by ``hack/get-prometheus.sh`` when
missing; nothing is installed system-wide and no service is started. The rule tests are written here as data and
handed to ``promtool test rules`` as a file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "charts" / "jobtrigger" / "files" / "alerts.yaml"
TOOLS = ROOT / ".tools" / "bin"
GET_PROMETHEUS = ROOT / "hack" / "get-prometheus.sh"
DOCS = ROOT / "docs" / "metrics.md"


def prometheus_binary(name: str) -> Path:
    """``.tools/bin/<name>`` (prometheus or promtool), fetched by hack/get-prometheus.sh when missing."""
    path = TOOLS / name
    if not path.exists():
        r = subprocess.run(["bash", str(GET_PROMETHEUS)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and path.exists(), f"hack/get-prometheus.sh failed:\n{r.stdout}\n{r.stderr}"
    return path


@pytest.fixture(scope="module")
def promtool() -> Path:
    return prometheus_binary("promtool")


def alert_names() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def series(name: str, values: str | list[float], **labels: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    vals = values if isinstance(values, str) else " ".join(str(v) for v in values)
    return {"series": f"{name}{{{body}}}", "values": vals}


def fires(name: str, at: str, value: float, severity: str = "warning", **labels: str) -> dict[str, Any]:
    """The alert ``name`` is firing at ``at`` with these labels (annotations: checked against the rule's)."""
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": {"severity": severity, **labels}}]}


def silent(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


CREATED = "jobtrigger_jobs_created_total"
SYNCS = "jobtrigger_syncs_total"
DEPTH = "jobtrigger_queue_depth"
RESTARTS = "jobtrigger_watch_restarts_total"
JTS = "jobtrigger_jobtriggers"
LEADER = "jobtrigger_leader"
SHARD_MEMBERS = "jobtrigger_shard_members"

#: (what it shows, input series, alert checks); interval 1m. Every alert appears firing and silent.
CASES: list[tuple[str, list[dict[str, str]], list[dict[str, Any]]]] = [
    (
        "Job creates refused every minute (a quota at 0): fires after 10 minutes of errors, not before",
        [
            series(CREATED, "0+1x40", trigger="resources", result="error"),
            series(CREATED, "0+3x40", trigger="resources", result="created"),
        ],
        [
            silent("JobTriggerJobCreateFailing", "5m"),
            fires("JobTriggerJobCreateFailing", "15m", 10),
            fires("JobTriggerJobCreateFailing", "30m", 10),
        ],
    ),
    (
        "healthy: Jobs created, 409s counted as exists, old errors no longer rising: silent",
        [
            series(CREATED, "0+5x40", trigger="schedule", result="created"),
            series(CREATED, "0+1x40", trigger="schedule", result="exists"),
            series(CREATED, "2x40", trigger="resources", result="error"),
        ],
        [silent("JobTriggerJobCreateFailing", "30m")],
    ),
    (
        "a JobTrigger whose every sync fails (retry capped at 60 s): fires after 15 minutes",
        [series(SYNCS, "0+1x50", result="error"), series(SYNCS, "0+20x50", result="ok")],
        [silent("JobTriggerSyncErrors", "10m"), fires("JobTriggerSyncErrors", "35m", 15)],
    ),
    (
        "an occasional failed sync (one every 4 minutes, retried fine): silent",
        [series(SYNCS, "0+0.25x50", result="error"), series(SYNCS, "0+20x50", result="ok")],
        [silent("JobTriggerSyncErrors", "35m")],
    ),
    (
        "the queue stays above 20 for good: fires",
        [series(DEPTH, "30x40", instance="a")],
        [silent("JobTriggerQueueBacklog", "10m"), fires("JobTriggerQueueBacklog", "20m", 30)],
    ),
    (
        "bursts that drain (50 keys, empty the next minute): silent",
        [series(DEPTH, [50 if i % 2 else 0 for i in range(41)], instance="a")],
        [silent("JobTriggerQueueBacklog", "30m")],
    ),
    (
        "watches failing with 403 twice a minute: fires after 15 minutes",
        [series(RESTARTS, "0+2x50", cause="error"), series(RESTARTS, "0+1x50", cause="410")],
        [silent("JobTriggerWatchRestarts", "10m"), fires("JobTriggerWatchRestarts", "35m", 30)],
    ),
    (
        "410 relists (normal) and a few errors: silent",
        [series(RESTARTS, "0+5x50", cause="410"), series(RESTARTS, "0+0.5x50", cause="error")],
        [silent("JobTriggerWatchRestarts", "35m")],
    ),
    (
        "a JobTrigger whose watch fails (WatchFailed) stays so: fires, with its reason",
        [
            series(JTS, "1x40", reason="WatchFailed"),
            series(JTS, "5x40", reason="Watching"),
            series(JTS, "0x40", reason="Forbidden"),
        ],
        [silent("JobTriggerNotReady", "10m"), fires("JobTriggerNotReady", "20m", 1, reason="WatchFailed")],
    ),
    (
        "Watching and Suspended JobTriggers, one briefly invalid then fixed: silent",
        [
            series(JTS, "10x40", reason="Watching"),
            series(JTS, "2x40", reason="Suspended"),
            series(JTS, [1, 1, 1] + [0] * 38, reason="InvalidSpec"),
        ],
        [silent("JobTriggerNotReady", "20m")],
    ),
    (
        "no replica reports jobtrigger_leader (all down): fires after 2 minutes",
        [series(SYNCS, "0+1x10", result="ok")],
        [silent("JobTriggerNoLeader", "1m"), fires("JobTriggerNoLeader", "5m", 0, severity="critical")],
    ),
    (
        "two standbys, nobody leading: fires",
        [series(LEADER, "0x10", instance="a"), series(LEADER, "0x10", instance="b")],
        [fires("JobTriggerNoLeader", "5m", 0, severity="critical")],
    ),
    (
        "three shard replicas, no leader (sharding replaces leader election): silent",
        [series(SHARD_MEMBERS, "3x10", instance=i) for i in "abc"] + [series(LEADER, "0x10", instance="a")],
        [silent("JobTriggerNoLeader", "5m")],
    ),
    (
        "shard replicas that all lost their Leases (members 0): fires",
        [series(SHARD_MEMBERS, "0x10", instance=i) for i in "ab"],
        [fires("JobTriggerNoLeader", "5m", 0, severity="critical")],
    ),
    (
        "a leader and a standby; then a fail-over within a minute: silent",
        [
            series(LEADER, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], instance="a"),
            series(LEADER, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1], instance="b"),
        ],
        [silent("JobTriggerNoLeader", "3m"), silent("JobTriggerNoLeader", "8m")],
    ),
]


def _with_annotations(rules: dict[str, dict[str, Any]], check: dict[str, Any], values: dict[str, float]) -> None:
    """promtool compares annotations too: expand the rule's templates the simple way this file uses them."""
    rule = rules[check["alertname"]]
    for exp in check["exp_alerts"]:
        value = values[check["alertname"]]
        out = {}
        for k, text in rule.get("annotations", {}).items():
            text = text.replace('{{ $value | printf "%.0f" }}', f"{value:.0f}")
            for label, v in exp["exp_labels"].items():
                text = text.replace("{{ $labels." + label + " }}", v)
            assert "{{" not in text, f"template not expanded by the test: {text}"
            out[k] = text
        exp["exp_annotations"] = out


def rule_tests() -> dict[str, Any]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    tests = []
    for what, input_series, checks in CASES:
        for check in checks:
            if check["exp_alerts"]:
                # the value each firing case expects in its description
                value = {
                    "JobTriggerJobCreateFailing": 10.0,
                    "JobTriggerSyncErrors": 15.0,
                    "JobTriggerQueueBacklog": 30.0,
                    "JobTriggerWatchRestarts": 30.0,
                    "JobTriggerNotReady": 1.0,
                    "JobTriggerNoLeader": 0.0,
                }
                _with_annotations(rules, check, value)
        tests.append({"name": what, "interval": "1m", "input_series": input_series, "alert_rule_test": checks})
    return {"rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": tests}


def test_promtool_check_rules(promtool: Path) -> None:
    r = subprocess.run([str(promtool), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in r.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    names = alert_names()
    assert len(names) == len(set(names)) >= 6
    checks = [c for _, _, cs in CASES for c in cs]
    for name in names:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in checks), f"{name}: no case where it fires"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in checks), f"{name}: no silent case"
    assert {c["alertname"] for c in checks} <= set(names)


def test_promtool_rule_unit_tests(promtool: Path, tmp_path: Path) -> None:
    shutil.copy(ALERTS, tmp_path / "alerts.yaml")
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(rule_tests(), sort_keys=False, width=200))
    r = subprocess.run(
        [str(promtool), "test", "rules", str(tmp_path / "alerts_test.yaml")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_rule_tests_catch_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    """The tests are not vacuous: an alert whose label matcher is wrong makes them fail."""
    broken = ALERTS.read_text().replace('{result="error"}[10m]', '{result="failed"}[10m]')
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yaml").write_text(broken)
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(rule_tests(), sort_keys=False, width=200))
    r = subprocess.run(
        [str(promtool), "test", "rules", str(tmp_path / "alerts_test.yaml")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode != 0
    assert "JobTriggerJobCreateFailing" in r.stdout + r.stderr


def test_docs_show_the_shipped_rules() -> None:
    """docs/metrics.md prints the rules file verbatim (one source of truth)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert ALERTS.read_text() in blocks, "docs/metrics.md must show charts/jobtrigger/files/alerts.yaml verbatim"
