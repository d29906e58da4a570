"""Rendering deploy/kustomize with the real ``kubectl kustomize``, validating objects, reading containers.

Kubernetes objects are validated offline by kubernetes-validate's schemas (strict: unknown fields are
errors); the two prometheus-operator kinds by their CRDs' openAPI schemas kept in ``crds/`` (see
crds/README.md for where they come from). Container arguments are resolved against the real click
command tree of ``ladle`` (``ladle.cli.main.cli``), the way the container's entrypoint would parse them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
TARGETS = {
    "base": KUSTOMIZE / "base",
    "dev": KUSTOMIZE / "overlays" / "dev",
    "prod": KUSTOMIZE / "overlays" / "prod",
}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: The image name the base uses; overlays rename it (kustomize ``images:``).
LADLE_IMAGES = ("ladle:", "registry.example.com/ml-platform/ladle:")
#: The CronJobs the issue asks for: (schedule, the repo's schedule they run, its window, its views).
CRONJOBS = {
    "ladle-materialize-hourly": ("5 * * * *", "hourly_prices_weather", timedelta(hours=2),
                                 {"commodity_price_features", "weather_features"}),
    "ladle-materialize-daily": ("0 2 * * *", "daily_economic", timedelta(days=7), {"economic_features"}),
}  # fmt: skip
#: docs/deploy.md's first release step: `kubectl apply -k OVERLAY -l 'app.kubernetes.io/component in (...)'`.
APPLY_FIRST = {"config", "storage", "apply"}
CRD_SCHEMAS = {
    "monitoring.coreos.com/v1/ServiceMonitor": Path(__file__).parent / "crds" / "servicemonitor-v1.yaml",
    "monitoring.coreos.com/v1/PrometheusRule": Path(__file__).parent / "crds" / "prometheusrule-v1.yaml",
}


def kubectl() -> str:
    """The kubectl binary; skipped loudly when missing, a failure under CI=true."""
    found = shutil.which("kubectl")
    if found is None:
        reason = "TOOL MISSING: kubectl is not on PATH; the Kustomize overlays cannot be rendered"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@cache
def _render(path: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(target: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders for a target (base, dev, prod)."""
    return [dict(obj) for obj in _render(TARGETS[target])]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` whose name is ``name`` (generated names keep a hash suffix)."""
    matches = [o for o in objects if o["kind"] == kind and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?",
                                                                         o["metadata"]["name"])]  # fmt: skip
    assert len(matches) == 1, f"expected one {kind} {name}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


# ---- schemas -------------------------------------------------------------------------------------


def _strict(schema: Any) -> None:
    """Make every object schema with properties refuse unknown fields (as --validate=strict does)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for item in schema:
            _strict(item)


@cache
def crd_validator(key: str) -> jsonschema.protocols.Validator:
    """A validator for one custom resource kind from its vendored CRD schema."""
    schema = yaml.safe_load(CRD_SCHEMAS[key].read_text())["schema"]
    _strict(schema)
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return validator_class(schema)  # type: ignore[no-any-return]


def validation_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Schema errors of one object against Kubernetes ``version`` (or its CRD), as readable lines."""
    import kubernetes_validate

    what = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    key = f"{obj['apiVersion']}/{obj['kind']}"
    if key in CRD_SCHEMAS:
        errors = sorted(crd_validator(key).iter_errors(obj), key=lambda e: list(e.path))
        problems = [f"{what}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors]
        name = obj.get("metadata", {}).get("name", "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name):
            problems.append(f"{what}: metadata.name is not a DNS subdomain name")
        return problems
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{what}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{what}: no schema: {e.message}"]
    return []


# ---- containers ----------------------------------------------------------------------------------


@dataclass
class Container:
    """One container of a rendered workload, with the environment Kubernetes would give it."""

    owner: str  # "Deployment/ladle-server"
    spec: dict[str, Any]
    pod: dict[str, Any]
    env: dict[str, str]

    @property
    def args(self) -> list[str]:
        """Arguments with ``$(VAR)`` expanded from the container's environment, as the kubelet does."""
        return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: self.env.get(m[1], m[0]), a)
                for a in self.spec.get("args", [])]  # fmt: skip

    @property
    def is_ladle(self) -> bool:
        return str(self.spec["image"]).startswith(LADLE_IMAGES)

    def port(self, name: str) -> int:
        ports = {p["name"]: p["containerPort"] for p in self.spec.get("ports", [])}
        assert name in ports, f"{self.owner}: container {self.spec['name']} has no port named {name}"
        return int(ports[name])


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload (Deployment, Job, CronJob), else None."""
    if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return dict(obj["spec"]["template"]["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def _env(objects: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from envFrom (ConfigMaps, Secrets in the output) and env values."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in {"ConfigMap", "Secret"}}
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(by_name[("ConfigMap", source["configMapRef"]["name"])].get("data", {}))
        if "secretRef" in source:
            secret = by_name.get(("Secret", source["secretRef"]["name"]))  # absent: created out of band
            if secret is not None:
                env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def containers(objects: list[dict[str, Any]], *, init: bool = True) -> Iterator[Container]:
    """Every container (and init container) of every workload."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        owner = f"{obj['kind']}/{obj['metadata']['name']}"
        for c in [*(spec.get("initContainers", []) if init else []), *spec["containers"]]:
            yield Container(owner, c, spec, _env(objects, c))


# ---- the CLI -------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """``ladle ARGS`` as click parses them: the global options, the command path and its options."""

    global_params: dict[str, Any]
    command: list[str]
    params: dict[str, Any]


def resolve(args: list[str], env: Mapping[str, str] | None = None) -> Invocation:
    """Parse ``args`` with the real ``ladle`` click tree (options checked, nothing run).

    ``env`` is the container's environment: click reads option defaults from environment variables
    (``LADLE_SERVE_PORT`` …), so it is put in place, and the test process's own ``LADLE_*`` are hidden.
    """
    from ladle.cli.main import cli

    saved = {k: v for k, v in os.environ.items() if k.startswith("LADLE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update({k: v for k, v in (env or {}).items() if k.startswith("LADLE_")})
    try:
        ctx = cli.make_context("ladle", list(args))
        path: list[str] = []
        group: click.Command = cli
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        while isinstance(group, click.Group):
            name, command, rest = group.resolve_command(ctx, rest)
            assert command is not None and name is not None, f"ladle {' '.join(args)}: no such command"
            path.append(name)
            ctx = command.make_context(name, rest, parent=ctx)
            group = command
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        return Invocation(dict(ctx.find_root().params), path, dict(ctx.params))
    finally:
        for key in [k for k in os.environ if k.startswith("LADLE_")]:
            del os.environ[key]
        os.environ.update(saved)


def containers_of(objects: list[dict[str, Any]], kind: str, name: str, *, init: bool = False) -> list[Container]:
    """The containers of one workload, with the environment the rendered ConfigMaps and Secrets give."""
    owner = f"{kind}/{find(objects, kind, name)['metadata']['name']}"
    return [c for c in containers(objects, init=init) if c.owner == owner]
