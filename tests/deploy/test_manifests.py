"""deploy/kustomize: every overlay renders, every object is valid, and the manifests agree with the CLI.

Expected values are the issue's (2 replicas, /ready and /health, `5 * * * *` over the last 2 hours of
prices and weather, `0 2 * * *` over the last 7 days of economic data, `ladle apply` in the init Job),
written here by hand; commands, flags and ports are checked against the real click tree and settings.
"""

from __future__ import annotations

import copy
import re
import socket
from typing import Any

import kubernetes_validate
import pytest

from deploy.manifests import (
    APPLY_FIRST,
    CRONJOBS,
    ROOT,
    TARGETS,
    Container,
    containers,
    containers_of,
    crd_validator,
    find,
    pod_spec,
    render,
    resolve,
    validation_errors,
)

pytestmark = pytest.mark.deploy
#: The oldest Kubernetes the manifests target (CronJob timeZone is GA since 1.27) and the newest schemas.
VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("target", list(TARGETS))
def test_every_object_is_valid(target: str, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(target)

    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", offline)  # the schemas are the packages' own files
    assert len(objects) >= 16
    problems = [p for obj in objects for p in validation_errors(obj, version)]
    assert not problems, "\n".join(problems)


def test_the_validators_reject_broken_objects() -> None:
    """The checks above can fail: a wrong type, an unknown field, a missing required field."""
    objects = render("base")
    server = copy.deepcopy(find(objects, "Deployment", "ladle-server"))
    server["spec"]["replicas"] = "two"
    assert validation_errors(server, VERSIONS[0])
    server = copy.deepcopy(find(objects, "Deployment", "ladle-server"))
    server["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    assert validation_errors(server, VERSIONS[0])
    monitor = copy.deepcopy(find(objects, "ServiceMonitor", "ladle"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert validation_errors(monitor, VERSIONS[0])
    monitor["spec"]["endpoints"][0] = {"port": "http", "interval": "fifteen seconds"}
    assert validation_errors(monitor, VERSIONS[0])
    rule = copy.deepcopy(find(objects, "PrometheusRule", "ladle"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert validation_errors(rule, VERSIONS[0])
    assert crd_validator("monitoring.coreos.com/v1/PrometheusRule").is_valid(find(objects, "PrometheusRule", "ladle"))


def test_every_overlay_has_the_platform_objects() -> None:
    wanted = {
        ("Deployment", "ladle-server"), ("Service", "ladle-server"), ("Deployment", "ladle-stream"),
        ("Job", "ladle-apply"), ("CronJob", "ladle-materialize-hourly"), ("CronJob", "ladle-materialize-daily"),
        ("PodDisruptionBudget", "ladle-server"), ("HorizontalPodAutoscaler", "ladle-server"),
        ("NetworkPolicy", "ladle-server"), ("ServiceMonitor", "ladle"), ("PrometheusRule", "ladle"),
        ("ConfigMap", "ladle-feature-store"), ("PersistentVolumeClaim", "ladle-offline"),
    }  # fmt: skip
    for target in TARGETS:
        objects = render(target)
        for kind, name in wanted:
            find(objects, kind, name)  # exactly one each


@pytest.mark.parametrize("target", ["base", "prod"])
def test_the_server_runs_two_replicas_with_probes(target: str) -> None:
    server = find(render(target), "Deployment", "ladle-server")
    assert server["spec"]["replicas"] == 2
    hpa = find(render(target), "HorizontalPodAutoscaler", "ladle-server")
    assert hpa["spec"]["minReplicas"] >= 2
    (container,) = server["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


def test_dev_runs_one_replica_and_lets_it_be_drained() -> None:
    objects = render("dev")
    assert find(objects, "Deployment", "ladle-server")["spec"]["replicas"] == 1
    pdb = find(objects, "PodDisruptionBudget", "ladle-server")["spec"]
    assert "minAvailable" not in pdb and pdb["maxUnavailable"] == 1


def _ladle_containers(target: str) -> list[Container]:
    return [c for c in containers(render(target)) if c.is_ladle]


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_ladle_container_runs_a_real_cli_command(target: str) -> None:
    """No command override (the image's ENTRYPOINT is ladle), and the args parse with the real CLI."""
    found = _ladle_containers(target)
    assert len(found) >= 6
    for c in found:
        assert "command" not in c.spec, f"{c.owner}: overrides the image's ENTRYPOINT ['ladle']"
        call = resolve(c.args, c.env)  # raises click's UsageError on an unknown command or option
        assert str(call.global_params["chdir"]) == "/app/feature_repo", c.owner
        assert str(call.global_params["feature_store_yaml"]) == "/etc/ladle/feature_store.yaml", c.owner
        mounts = {m["mountPath"]: m["name"] for m in c.spec["volumeMounts"]}
        assert mounts["/etc/ladle"] == "feature-store", f"{c.owner}: feature_store.yaml is not mounted"


def test_the_cli_check_can_fail() -> None:
    import click

    with pytest.raises(click.UsageError):
        resolve(["-c", "/app/feature_repo", "serve", "--grpc-prot", "6566"])
    with pytest.raises(click.UsageError):
        resolve(["materialise-incremental", "now"])
    with pytest.raises(click.UsageError):
        resolve(["schedule", "--once"])


@pytest.mark.parametrize("target", list(TARGETS))
def test_server_ports_and_drain_match_the_cli(target: str) -> None:
    from ladle.server.settings import setting_infos

    objects = render(target)
    (c,) = containers_of(objects, "Deployment", "ladle-server")
    call = resolve(c.args, c.env)
    assert call.command == ["serve"]
    assert call.params["host"] == "0.0.0.0"
    assert c.port("http") == call.params["port"] == 8080
    assert c.port("grpc") == call.params["grpc_port"] == 6566
    defaults = {s.name: s.default for s in setting_infos()}
    assert (defaults["port"], defaults["grpc_port"]) == (8080, 6566), "the server's default ports moved"
    service = find(objects, "Service", "ladle-server")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (8080, "http"), "grpc": (6566, "grpc")}
    # Termination: preStop sleep + the server's drain + a margin fit in the grace period.
    drain = float(call.params["graceful_timeout"] or defaults["graceful_timeout"])
    pre_stop = c.spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = c.pod["terminationGracePeriodSeconds"]
    assert grace >= float(pre_stop[1]) + drain + 5, (grace, pre_stop, drain)


@pytest.mark.parametrize("target", list(TARGETS))
def test_stream_runs_ladle_stream_with_probes_on_its_metrics_port(target: str) -> None:
    (c,) = containers_of(render(target), "Deployment", "ladle-stream")
    call = resolve(c.args, c.env)
    assert call.command == ["stream"]
    assert c.port("metrics") == call.params["metrics_port"] == 8090
    assert c.spec["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert c.spec["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert c.env["LADLE_HEALTHCHECK_URL"] == "http://127.0.0.1:8090/health"


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_init_job_runs_ladle_apply(target: str) -> None:
    objects = render(target)
    (main,) = containers_of(objects, "Job", "ladle-apply")
    assert resolve(main.args, main.env).command == ["apply"]
    init, _ = containers_of(objects, "Job", "ladle-apply", init=True)
    assert resolve(init.args, init.env).command == ["ingest"]  # the offline history apply validates against


@pytest.mark.parametrize("target", list(TARGETS))
def test_cronjobs_materialize_the_issue_windows_on_schedule(target: str) -> None:
    from ladle.schedule import collect_schedules

    declared = {s.name: s for s in collect_schedules(ROOT / "feature_repo")}
    objects = render(target)
    for name, (cron, schedule_name, window, views) in CRONJOBS.items():
        job = find(objects, "CronJob", name)
        assert job["spec"]["schedule"] == cron
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        assert job["spec"]["timeZone"] == "Etc/UTC"
        (c,) = containers_of(objects, "CronJob", name)
        call = resolve(c.args, c.env)
        assert call.command == ["schedule"] and call.params["once"] == schedule_name, c.args
        # `schedule --once NAME` materializes [now - lookback, now] of the schedule's views.
        schedule = declared[schedule_name]
        assert schedule.cron.expression == cron and schedule.timezone == "UTC"
        assert schedule.lookback == window
        assert set(schedule.feature_views) == views
        assert c.pod["restartPolicy"] in {"Never", "OnFailure"}


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_reference_resolves(target: str) -> None:
    """ConfigMaps, Secrets, claims and ports referenced by the workloads exist in the rendered output."""
    objects = render(target)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    out_of_band = {("Secret", "ladle-secrets")} if target != "dev" else set()
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, volume
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for source in c.get("envFrom", []):
                ref = ("ConfigMap", source["configMapRef"]["name"]) if "configMapRef" in source else (
                    "Secret", source["secretRef"]["name"])  # fmt: skip
                assert ref in names or ref in out_of_band, f"{obj['metadata']['name']}: {ref} is not defined"
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    monitor = find(objects, "ServiceMonitor", "ladle")
    port_names = {p["name"] for s in services.values() if s["metadata"]["labels"].get("app.kubernetes.io/name")
                  == "ladle" for p in s["spec"]["ports"]}  # fmt: skip
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    policy = find(objects, "NetworkPolicy", "ladle-server")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert {p["port"] for p in services["ladle-server"]["spec"]["ports"]} <= allowed


@pytest.mark.parametrize("target", list(TARGETS))
def test_ladle_pods_meet_the_restricted_pod_security_standard(target: str) -> None:
    for c in _ladle_containers(target):
        pod_context = c.pod.get("securityContext", {})
        context = c.spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True and pod_context.get("runAsUser", 0) != 0, c.owner
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", c.owner
        assert context.get("allowPrivilegeEscalation") is False, c.owner
        assert context["capabilities"]["drop"] == ["ALL"], c.owner


def _config_variables(value: Any) -> set[str]:
    """The ``${VAR}`` names used in the string values of a loaded YAML document."""
    if isinstance(value, dict):
        return set().union(*(_config_variables(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_config_variables(v) for v in value))
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}", value)) if isinstance(value, str) else set()


@pytest.mark.parametrize("target", list(TARGETS))
def test_feature_store_yaml_loads_with_the_containers_environment(
    target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The ConfigMap's feature_store.yaml is valid Ladle config once ladle-env and the Secret are in place."""
    import yaml

    from ladle.config import load_config

    objects = render(target)
    text = find(objects, "ConfigMap", "ladle-feature-store")["data"]["feature_store.yaml"]
    server = next(c for c in containers(objects) if c.owner == "Deployment/ladle-server")
    raw = yaml.safe_load(text)
    secret_keys = _config_variables(raw) - set(server.env)
    documented = {"LADLE_PG_PASSWORD", "LADLE_REDIS_PASSWORD", "LADLE_KAFKA_PASSWORD"}
    assert secret_keys <= documented, f"variables neither in ladle-env nor documented as Secret keys: {secret_keys}"
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    for key in secret_keys:
        monkeypatch.setenv(key, "s3cret")
    config = load_config(raw, tmp_path)
    assert config.project == "commodity_analytics"
    assert config.online_store.type == "redis"
    assert config.registry.path.startswith("postgresql://ladle:")
    assert f"@{server.env['LADLE_PG_HOST']}:" in config.registry.path
    assert config.stream.kafka["bootstrap.servers"] == server.env["LADLE_KAFKA_BOOTSTRAP_SERVERS"]
    assert config.stream.metrics_port == 8090


def _exported_metric_names() -> set[str]:
    """Every sample name Ladle's processes expose: the server's, the shared ones, the stream's."""
    from prometheus_client import REGISTRY

    import ladle.metrics  # noqa: F401  (registers the shared histogram)
    import ladle.server.metrics as server_metrics
    from ladle.streaming.metrics import StreamMetrics

    names = {server_metrics.FRESHNESS_NAME}
    names.update(server_metrics.METRIC_NAMES)  # includes the families computed at scrape from monitoring reports
    for registry in (REGISTRY, StreamMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
            names.update(family.name + s for s in suffixes.get(family.type, [""]))
            names.update(sample.name for sample in family.samples)
    return names


def test_alerts_use_the_metrics_ladle_exports() -> None:
    rules = find(render("base"), "PrometheusRule", "ladle")["spec"]["groups"]
    alerts = {r["alert"]: str(r["expr"]) for g in rules for r in g["rules"] if "alert" in r}
    exported = _exported_metric_names()
    kube_state_metrics = {"kube_job_status_failed", "kube_cronjob_status_last_successful_time"}
    for alert, expr in alerts.items():
        assert expr.count("(") == expr.count(")"), alert
        for name in re.findall(r"\b((?:feast|ladle|kube)_[a-z0-9_]+)", expr):
            assert name in exported or name in kube_state_metrics, f"{alert}: {name} is not an exported metric"
    used = " ".join(alerts.values())
    # What the issue asks to alert on: server error rate, p99 latency, freshness, consumer lag, failures.
    assert "feast_feature_server_request_total" in alerts["LadleServerErrorRate"]
    assert "histogram_quantile(0.99" in alerts["LadleServerLatencyP99High"]
    assert "feast_online_request_latency_bucket" in alerts["LadleServerLatencyP99High"]
    assert "feast_feature_freshness_seconds" in used and "ladle_stream_feature_freshness_seconds" in used
    assert "ladle_stream_consumer_lag" in alerts["LadleStreamConsumerLag"]
    assert "ladle-materialize-" in alerts["LadleMaterializationFailed"]


def test_the_metric_check_can_fail() -> None:
    exported = _exported_metric_names()
    assert "feast_feature_server_request_total" in exported and "ladle_stream_consumer_lag" in exported
    assert "feast_online_request_latency_bucket" in exported
    assert "feast_feature_server_request_count" not in exported


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_apply_first_selection_holds_everything_the_init_job_needs(target: str) -> None:
    """Applying only the objects labelled config, storage or apply creates a Job whose references all exist."""
    objects = render(target)
    chosen = [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") in APPLY_FIRST]
    names = {(o["kind"], o["metadata"]["name"]) for o in chosen}
    assert {kind for kind, _ in names} >= {"Job", "ConfigMap", "PersistentVolumeClaim"}
    assert not {kind for kind, _ in names} & {"Deployment", "CronJob"}, "the selection would roll out servers"
    job = find(chosen, "Job", "ladle-apply")
    spec = pod_spec(job)
    assert spec is not None
    out_of_band = {("Secret", "ladle-secrets")} if target != "dev" else set()
    for volume in spec["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    for c in [*spec["initContainers"], *spec["containers"]]:
        for source in c["envFrom"]:
            ref = ("ConfigMap", source["configMapRef"]["name"]) if "configMapRef" in source else (
                "Secret", source["secretRef"]["name"])  # fmt: skip
            assert ref in names or ref in out_of_band, ref
