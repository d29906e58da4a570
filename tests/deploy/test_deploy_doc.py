"""docs/deploy.md stays true: its ladle commands parse, its paths exist, its tables match the manifests."""

from __future__ import annotations

import re
import shlex

import pytest

from deploy.manifests import APPLY_FIRST, CRONJOBS, ROOT, TARGETS, containers_of, find, render, resolve

pytestmark = pytest.mark.deploy
DOC = (ROOT / "docs" / "deploy.md").read_text()


def _bash_lines() -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", DOC, re.S):
        lines.extend(ln.strip() for ln in block.replace("\\\n", " ").splitlines() if ln.strip())
    return lines


def test_every_ladle_command_in_the_doc_parses() -> None:
    commands = []
    for line in _bash_lines():
        argv = shlex.split(line)
        if "--" in argv and argv[0] == "kubectl":  # kubectl exec ... -- ladle ...
            argv = argv[argv.index("--") + 1 :]
        if argv and argv[0] == "ladle":
            commands.append(argv[1:])
    assert len(commands) >= 4
    for args in commands:
        resolve(args)  # click's UsageError on an unknown command or option


def test_kustomize_paths_and_selectors_are_the_real_ones() -> None:
    paths = set(re.findall(r"kubectl (?:apply -k|kustomize) ([\w/.-]+)", DOC))
    assert paths, "no kubectl apply -k / kubectl kustomize in the doc"
    known = {str(path.relative_to(ROOT)) for path in TARGETS.values()}
    assert paths <= known, paths - known
    (selector,) = set(re.findall(r"-l 'app\.kubernetes\.io/component in \(([a-z,]+)\)'", DOC))
    assert set(selector.split(",")) == APPLY_FIRST
    for name in ("ladle-apply", "ladle-server", "ladle-stream", *CRONJOBS):
        assert name in DOC


def test_the_alert_table_lists_every_alert() -> None:
    rules = find(render("prod"), "PrometheusRule", "ladle")["spec"]["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    documented = set(re.findall(r"^\| `(Ladle\w+)` \|", DOC, re.M))
    assert documented == alerts


def test_the_process_table_shows_the_manifests_commands() -> None:
    objects = render("prod")
    for kind, name in [("Deployment", "ladle-server"), ("Deployment", "ladle-stream"), *(
            ("CronJob", cron) for cron in CRONJOBS)]:  # fmt: skip
        (container,) = containers_of(objects, kind, name)
        command = " ".join(container.args[4:])  # after -c /app/feature_repo -f /etc/ladle/feature_store.yaml
        assert f"`{command}" in DOC, f"docs/deploy.md does not show {name}'s command: {command}"
