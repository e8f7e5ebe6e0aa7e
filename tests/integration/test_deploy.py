"""The production stack's files hold together: compose, Dockerfile, Prometheus, Grafana.

Nothing here starts a container (CI has no Docker engine). Instead:

- ``docker-compose.yml`` is validated against the Compose Specification's JSON schema
  (the copy vendored by the PyPI package ``check-jsonschema``), after compose-style
  ``${VAR:-default}`` interpolation; ``docker compose config`` runs too where the
  compose plugin exists. The worker's environment must be valid ``Settings``, the
  simulator's command must parse and run (dry), and every mount must exist.
- ``promtool`` (Debian's ``prometheus`` package) checks the Prometheus config, and every
  PromQL expression of the dashboards as a recording rule.
- The alerting rules (``deploy/prometheus/rules/cxpulse.yml``) pass ``promtool check
  rules`` and their unit tests (``promtool test rules``), name only metrics the workers
  export, and each has a severity, a ``for:`` and a section in docs/operations.md.
- Grafana reads ClickHouse as the read-only user of ``deploy/clickhouse/users.d``.
- The Kubernetes manifests (``deploy/k8s``) are valid, strictly, against the Kubernetes
  1.29 and newest schemas that the PyPI package ``kubernetes-validate`` bundles (offline),
  and agree with the settings, the Dockerfile and compose (no cluster involved).
- Every PromQL expression names only metrics of ``cxpulse.streams.metrics.REGISTRY`` with their
  labels, and every metric has a panel.
- Every ClickHouse query of the dashboards runs on chDB with the real schema, Grafana's
  macros replaced by plain SQL, so a wrong column or table fails here.

Missing tools are skipped locally with a one-line how-to and fail in CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import Backend
from cxpulse.streams.settings import Settings
from tests.integration.conftest import require_tool

pytestmark = [pytest.mark.clickhouse]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_K8S = PROMETHEUS.with_name("prometheus-kubernetes.yml")
#: Prometheus configurations that ship: the compose stack's and the Kubernetes one.
PROMETHEUS_CONFIGS = [PROMETHEUS, PROMETHEUS_K8S]
K8S = ROOT / "deploy" / "k8s"
#: Kubernetes versions the manifests must be valid for: the oldest supported (1.29) and
#: the newest whose schemas kubernetes-validate bundles ("latest").
K8S_VERSIONS = ("1.29.0", "latest")
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OPERATIONS = ROOT / "docs" / "operations.md"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "cxpulse.yml"
RULE_TESTS = RULES.with_name("cxpulse.test.yml")
#: What the alerting rules must watch (the production-deploy issue), by alert name.
REQUIRED_ALERTS = {
    "CxpulseWorkerNotReady": "not ready",
    "CxpulseEventLagGrowing": "lag growing",
    "CxpulseDeadLettersHigh": "dead-letter rate",
    "CxpulseSinkFailing": "sink failing",
    "CxpulseCasesOverdue": "overdue cases",
}
#: The scrape job of the workers, which the rules' `up{job=...}` names.
WORKER_JOB = "cxpulse-worker"
GRAFANA_USERS_XML = ROOT / "deploy" / "clickhouse" / "users.d" / "grafana.xml"
#: The read-only ClickHouse user Grafana logs in as (deploy/clickhouse/users.d/grafana.xml).
GRAFANA_CLICKHOUSE_USER = "cxpulse_grafana"

#: The secrets compose refuses to start without, with stand-ins for the checks.
SECRETS = {
    "CLICKHOUSE_PASSWORD": "test-secret",
    "CLICKHOUSE_GRAFANA_PASSWORD": "test-grafana-reader",
    "GRAFANA_ADMIN_PASSWORD": "test-admin",
}
#: Services built from deploy/Dockerfile (the cxpulse image).
CXPULSE_SERVICES = ("worker", "simulator")
#: Views and tables dashboards may name beyond SPECS (none today: the alert views are in).
EXTRA_TABLES = {"alerts", "open_alerts", "alert_volume"}
#: Prometheus' own series a dashboard may use.
PROMETHEUS_BUILTINS = {"up"}
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"instance", "job"}


def kubernetes_validate() -> Any:
    """The schema validator of the PyPI package kubernetes-validate: the Kubernetes
    OpenAPI schemas as JSON schemas, bundled for every version, so it works offline."""
    try:
        from kubernetes_validate import utils
    except ImportError:
        require_tool(
            None, "kubernetes-validate not installed: pip install 'kubernetes-validate==1.37.0'"
        )
    return utils


def promtool() -> str:
    path = shutil.which("promtool")
    require_tool(
        path, "promtool not found: apt-get install prometheus (or bash .ci/install-tools.sh)"
    )
    assert path
    return path


# --- compose -------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_]\w*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-file interpolation of every string value (keys are left alone)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        present = current is not None and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if present and current is not None else arg
        if op in (":?", "?"):
            if not present:
                raise InterpolationError(f"{name}: {arg or 'required'}")
            return current or ""
        if op in (":+", "+"):
            return arg if present else ""
        return current or ""

    return _VAR.sub(one, value)


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The compose model as docker compose sees it with the secrets set."""
    return interpolate(raw_compose, dict(SECRETS))


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    try:
        from importlib.resources import files

        import check_jsonschema  # noqa: F401
    except ImportError:
        require_tool(None, "check-jsonschema not installed: pip install 'check-jsonschema==0.38.0'")
    import jsonschema

    schema_file = files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    errors = sorted(cls(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:10]
    )


def test_docker_compose_config_accepts_the_file_where_the_plugin_exists() -> None:
    """The reference implementation, when this machine has it (CI does not: the schema
    test above is the check that always runs)."""
    docker = shutil.which("docker")
    probe = docker and subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if not probe or probe.returncode != 0:
        pytest.skip("no docker compose plugin here; the Compose Specification schema test ran")
    assert docker
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "simulator", "config", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, **SECRETS},
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_its_secrets(raw_compose: dict[str, Any]) -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(InterpolationError, match=missing):
            interpolate(raw_compose, env)


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: pin {image}"
    expected = {
        "kafka": "apache/kafka:",
        "clickhouse": "clickhouse/clickhouse-server:",
        "prometheus": "prom/prometheus:",
        "grafana": "grafana/grafana:",
    }
    for name, prefix in expected.items():
        assert compose["services"][name]["image"].startswith(prefix)


def test_kafka_is_kraft_with_a_valid_cluster_id_and_no_auto_created_topics(
    compose: dict[str, Any],
) -> None:
    import base64

    env = service_env(compose["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "not a base64 UUID"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The wire format allows 8 MiB messages.
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= 8 * 1024 * 1024
    volumes = compose["services"]["kafka"]["volumes"]
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in volumes), "log dir not on volume"


def test_cxpulse_services_have_valid_settings(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name in CXPULSE_SERVICES:
        service = compose["services"][name]
        assert service["image"] == compose["services"]["worker"]["image"]
        env = service_env(service)
        names = {k.removeprefix("CXPULSE_").lower() for k in env if k.startswith("CXPULSE_")}
        unknown = names - fields
        assert not unknown, f"{name}: not cxpulse settings: {sorted(unknown)}"
        values = {k.removeprefix("CXPULSE_").lower(): v for k, v in env.items()}
        settings = Settings(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]
        assert settings.web_host == "0.0.0.0", "containers must listen on every interface"
        assert settings.kafka_url == "kafka://kafka:9092"
        assert settings.clickhouse_url.startswith("clickhouse://")
        assert settings.clickhouse_password is not None
        assert settings.clickhouse_password.get_secret_value() == SECRETS["CLICKHOUSE_PASSWORD"]


def test_worker_scales_restarts_and_reports_health(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    assert worker["deploy"]["replicas"] >= 2
    assert "ports" not in worker and "container_name" not in worker, "replicas cannot share"
    assert worker["restart"] == "unless-stopped"
    assert "/readyz" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for page in ('"/readyz"', '"/livez"', '"/healthz"'):
        assert page in (ROOT / "streams" / "web.py").read_text(), f"the worker serves {page}"


def test_simulator_is_an_optional_profile_and_its_command_runs(
    compose: dict[str, Any],
) -> None:
    from click.testing import CliRunner

    from cxpulse.streams.cli import cli

    simulator = compose["services"]["simulator"]
    assert simulator["profiles"] == ["simulator"]
    command = [str(a) for a in simulator["command"]]
    assert command[0] == "simulate" and command[command.index("--rate") + 1] == "200"
    # The same arguments, dry and cut to one event: options and incidents must be valid.
    result = CliRunner().invoke(
        cli, [*command, "--dry-run", "--events", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["event_id"]


def test_every_bind_mount_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_dockerfile_copies_what_exists_and_serves_health() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*$", text, re.M), "pin the Python base image"
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        if line.startswith("--from="):
            continue  # from a build stage, not from the repository
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
    # the build stage compiles the scoring core (setup.py); the image runs its wheel
    assert re.search(r"^FROM python:3\.11[\w.-]* AS build$", text, re.M)
    assert "COPY --from=build /wheels /wheels" in text and "gcc" in text
    assert "/livez" in text
    assert "CXPULSE_WEB_HOST=0.0.0.0" in text
    for name in re.findall(r"\bCXPULSE_(\w+)=", text):
        assert name.lower() in Settings.model_fields, f"CXPULSE_{name} is not a setting"


# --- Prometheus ----------------------------------------------------------------------


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_prometheus_config_passes_promtool(config: Path) -> None:
    done = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_discovers_every_worker_replica(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_job = jobs["cxpulse-worker"]
    port = int(service_env(compose["services"]["worker"])["CXPULSE_WEB_PORT"])
    [sd] = worker_job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == port
    assert worker_job.get("metrics_path", "/metrics") == "/metrics"
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


# --- Kubernetes ----------------------------------------------------------------------


def k8s_manifests() -> list[dict[str, Any]]:
    """Every resource of the manifests kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
    ]


def k8s_resources() -> dict[str, dict[str, Any]]:
    """kind → resource, for the kinds the manifests hold one of."""
    kinds = [doc["kind"] for doc in k8s_manifests()]
    return {doc["kind"]: doc for doc in k8s_manifests() if kinds.count(doc["kind"]) == 1}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert sorted(files) == sorted(kustomization["resources"])
    assert kustomization["namespace"] == k8s_resources()["Namespace"]["metadata"]["name"]
    guide = OPERATIONS.read_text()
    assert "kubernetes" in markdown_anchors(guide), "docs/operations.md: no Kubernetes section"
    for name in files:
        assert f"`{name}`" in guide, f"docs/operations.md does not describe {name}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_kubernetes_schemas(version: str) -> None:
    """Strict: an unknown or misspelt field fails too (the -strict schemas forbid
    additional properties), not only a wrong type or a missing required field."""
    utils = kubernetes_validate()
    if version == "latest":
        version = utils.latest_version()
    checked = []
    for resource in k8s_manifests():
        kind = resource["kind"]
        try:
            utils.validate(resource, version, strict=True)
        except utils.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{kind} {resource['metadata']['name']}: {path}: {exc.message}")
        except utils.SchemaNotFoundError as exc:
            pytest.fail(exc.message)
        checked.append(kind)
    expected = {"Namespace", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    assert expected <= set(checked)


def k8s_worker() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the worker StatefulSet, its worker container)."""
    statefulset = k8s_resources()["StatefulSet"]
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    return statefulset, container


def k8s_settings() -> dict[str, str]:
    return dict(k8s_resources()["ConfigMap"]["data"])


def test_kubernetes_settings_are_valid_and_hold_no_secret() -> None:
    data = k8s_settings()
    fields = set(Settings.model_fields)
    names = {k.removeprefix("CXPULSE_").lower() for k in data}
    assert all(k.startswith("CXPULSE_") for k in data) and names <= fields, names - fields
    settings = Settings(**{k.removeprefix("CXPULSE_").lower(): v for k, v in data.items()})  # type: ignore[arg-type]
    assert settings.web_host == "0.0.0.0"
    assert settings.clickhouse_url.startswith("clickhouse://")
    assert settings.clickhouse_password is None, "the password belongs in the Secret"
    assert "CXPULSE_WEBHOOK_SECRET" not in data
    # The Secret is referenced, never committed.
    kinds = [doc["kind"] for p in K8S.glob("*.y*ml") for doc in yaml.safe_load_all(p.read_text())]
    assert "Secret" not in kinds


def test_workers_are_a_statefulset_with_a_volume_probes_and_time_to_stop(
    compose: dict[str, Any],
) -> None:
    statefulset, container = k8s_worker()
    spec, pod = statefulset["spec"], statefulset["spec"]["template"]["spec"]
    data = k8s_settings()
    assert spec["replicas"] == 2
    assert spec["template"]["metadata"]["labels"] == spec["selector"]["matchLabels"]
    assert container["image"] == compose["services"]["worker"]["image"]
    assert container["args"] == compose["services"]["worker"]["command"]
    refs = container["envFrom"]
    assert {"configMapRef": {"name": k8s_resources()["ConfigMap"]["metadata"]["name"]}} in refs
    assert {"secretRef": {"name": "cxpulse-secrets"}} in refs
    # The volume: a claim per worker, mounted at CXPULSE_DATA_DIR.
    [claim] = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == data["CXPULSE_DATA_DIR"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # Probes on the web port: alive on /livez, ready on /readyz.
    [port] = container["ports"]
    assert port["containerPort"] == int(data["CXPULSE_WEB_PORT"])
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    for probe in [*probes.values(), container["startupProbe"]["httpGet"]]:
        assert probe["port"] in (port["name"], port["containerPort"])
    # Liveness must not restart a worker that merely waits for Kafka or ClickHouse.
    assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"
    # At least the time compose gives a worker to leave the group and flush its sinks.
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert grace.endswith("s") and pod["terminationGracePeriodSeconds"] >= int(grace[:-1])
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    # The image's user (deploy/Dockerfile), not root; the volume writable by its group.
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE.read_text())
    assert uid and pod["securityContext"]["runAsUser"] == int(uid[1])
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["fsGroup"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_services_and_disruption_budget_select_the_workers() -> None:
    statefulset, container = k8s_worker()
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    services = {}
    for service in (r for r in k8s_manifests() if r["kind"] == "Service"):
        services[service["metadata"]["name"]] = service
        assert service["spec"]["selector"] == labels, service["metadata"]["name"]
        assert service["spec"]["publishNotReadyAddresses"] is True
        [port] = service["spec"]["ports"]
        assert port["targetPort"] == container["ports"][0]["name"]
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert len(services) == 2, "the headless Service and the metrics Service"
    [metrics] = [s for name, s in services.items() if name != statefulset["spec"]["serviceName"]]
    notes = metrics["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == int(k8s_settings()["CXPULSE_WEB_PORT"])
    pdb = k8s_resources()["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == labels


def test_kubernetes_prometheus_finds_every_worker_by_dns() -> None:
    statefulset, _ = k8s_worker()
    config = yaml.safe_load(PROMETHEUS_K8S.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB]
    [sd] = job["dns_sd_configs"]
    namespace = k8s_resources()["Namespace"]["metadata"]["name"]
    assert sd["names"] == [f"{statefulset['spec']['serviceName']}.{namespace}.svc.cluster.local"]
    assert sd["type"] == "A" and sd["port"] == int(k8s_settings()["CXPULSE_WEB_PORT"])


# --- Grafana -------------------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    text = (GRAFANA / "provisioning" / "datasources" / "cxpulse.yml").read_text()
    return {ds["uid"]: ds for ds in yaml.safe_load(text)["datasources"]}


def targets(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard file, panel title, target) of every query to a data source type."""
    for name, dashboard in load_dashboards().items():
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == kind:
                    yield name, panel.get("title", "?"), target


def promql_exprs() -> list[tuple[str, str]]:
    exprs = [(f"{f}: {title}", t["expr"]) for f, title, t in targets("prometheus")]
    for name, dashboard in load_dashboards().items():
        for var in dashboard.get("templating", {}).get("list", []):
            if (var.get("datasource") or {}).get("type") == "prometheus":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
                assert m, f"{name}: variable {var['name']}: unexpected query {query!r}"
                exprs.append((f"{name}: variable {var['name']}", f"count by ({m[2]}) ({m[1]})"))
    return exprs


def test_grafana_is_provisioned_with_both_data_sources(compose: dict[str, Any]) -> None:
    sources = provisioned_datasources()
    assert {ds["type"] for ds in sources.values()} == {
        "prometheus",
        "grafana-clickhouse-datasource",
    }
    prom = next(ds for ds in sources.values() if ds["type"] == "prometheus")
    assert prom["url"] == "http://prometheus:9090"
    ch = next(ds for ds in sources.values() if ds["type"] != "prometheus")
    assert ch["jsonData"]["host"] == "clickhouse"
    assert ch["jsonData"]["defaultDatabase"] == "cxpulse"
    assert ch["jsonData"]["username"] == GRAFANA_CLICKHOUSE_USER
    assert ch["secureJsonData"]["password"] == "$CLICKHOUSE_GRAFANA_PASSWORD"

    grafana = compose["services"]["grafana"]
    env = service_env(grafana)
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", env["GF_INSTALL_PLUGINS"])
    assert env["CLICKHOUSE_GRAFANA_PASSWORD"] == SECRETS["CLICKHOUSE_GRAFANA_PASSWORD"]
    # The workers' password (their user may write) is not Grafana's business.
    assert SECRETS["CLICKHOUSE_PASSWORD"] not in env.values()
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "cxpulse.yml").read_text()
    )["providers"][0]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()


def test_grafana_reads_clickhouse_as_a_read_only_user(compose: dict[str, Any]) -> None:
    """The user of Grafana's ClickHouse data source may only read cxpulse's database:
    Grafana runs whatever SQL a panel holds, so ClickHouse is what refuses a write."""
    import xml.etree.ElementTree as ET

    root = ET.parse(GRAFANA_USERS_XML).getroot()
    assert root.tag == "clickhouse"
    user = root.find(f"users/{GRAFANA_CLICKHOUSE_USER}")
    assert user is not None, f"{GRAFANA_USERS_XML.name}: no user {GRAFANA_CLICKHOUSE_USER}"
    # No password, hash or default in the repository: the server reads it from its env.
    [password] = [e for e in user if e.tag.startswith("password")]
    assert password.tag == "password" and not (password.text or "").strip()
    env_name = password.get("from_env")
    assert env_name in SECRETS, f"the password comes from {env_name}, not a compose secret"
    grants = [q.text or "" for q in user.findall("grants/query")]
    assert grants == ["GRANT SELECT ON cxpulse.*"], grants
    profile = root.find(f"profiles/{user.findtext('profile')}")
    assert profile is not None, "the user's profile is not defined in the same file"
    assert profile.findtext("readonly") == "1", "readonly = 1 (2 would allow lifting limits)"
    # The plugin's client sends max_execution_time with every query: the one setting
    # the user may change under readonly = 1, and bounded.
    constraint = profile.find("constraints/max_execution_time")
    assert constraint is not None and constraint.find("changeable_in_readonly") is not None
    assert 0 < float(constraint.findtext("max") or 0) <= 300
    assert [c.tag for c in profile.findall("constraints/*")] == ["max_execution_time"]

    clickhouse = compose["services"]["clickhouse"]
    assert service_env(clickhouse)[env_name] == SECRETS[env_name]
    mounts = dict(v.split(":")[:2] for v in clickhouse["volumes"])
    target = mounts.get("./" + GRAFANA_USERS_XML.relative_to(ROOT).as_posix())
    assert target == "/etc/clickhouse-server/users.d/grafana.xml", clickhouse["volumes"]

    ch = next(ds for ds in provisioned_datasources().values() if ds["type"] == CH_TYPE)
    assert ch["jsonData"]["username"] == GRAFANA_CLICKHOUSE_USER
    assert ch["secureJsonData"]["password"] == f"${env_name}"
    assert service_env(compose["services"]["grafana"])[env_name] == SECRETS[env_name]


def test_dashboards_load_and_use_only_provisioned_data_sources() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {"pipeline-health.json", "customer-experience.json"}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    sources = provisioned_datasources()
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in all_panels(dashboard)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in all_panels(dashboard):
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
            mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
            assert not cells & mine, f"{name}: {panel['title']} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel.get("title") and panel.get("description"), f"{name}: untitled panel"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                ds = target.get("datasource") or panel["datasource"]
                assert ds["uid"] in sources, f"{name}: {panel['title']}: {ds}"
                assert sources[ds["uid"]]["type"] == ds["type"]


# --- PromQL --------------------------------------------------------------------------


def registry_metrics() -> dict[str, tuple[str, set[str], set[str]]]:
    """Sample name → (family, labels, bucket bounds) for every series the workers export."""
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.utils import floatToGoString

    from cxpulse.streams import metrics

    defined = {
        m._name: m
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase) and m._name in metrics.REGISTRY._names_to_collectors
    }
    samples: dict[str, tuple[str, set[str], set[str]]] = {}
    for family in metrics.REGISTRY.collect():
        wrapper = defined.get(family.name)
        if wrapper is not None:
            labels = set(wrapper._labelnames)
        else:  # a collector of the project's own (metrics.BatchHistogram): what it exports
            labels = {k for s in family.samples for k in s.labels} - {"le"}
        if family.type == "counter":
            samples[family.name + "_total"] = (family.name, labels, set())
        elif family.type == "histogram":
            if wrapper is not None:
                bounds = {floatToGoString(b) for b in wrapper._upper_bounds}  # type: ignore[attr-defined]
            else:
                bounds = {s.labels["le"] for s in family.samples if "le" in s.labels}
            samples[family.name + "_bucket"] = (family.name, labels | {"le"}, bounds)
            samples[family.name + "_sum"] = (family.name, labels, set())
            samples[family.name + "_count"] = (family.name, labels, set())
        else:
            samples[family.name] = (family.name, labels, set())
    return samples


_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip


def promql_selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value}) of every vector selector in a PromQL expression."""
    text = re.sub(r"\[[^\]]*\]", "", expr)
    found = []
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?", text):
        name, matchers = m.group(1), m.group(2) or ""
        rest = text[m.end() :].lstrip()
        is_call = not matchers and re.match(r"(?:(?:by|without)\s*\([^)]*\)\s*)?\(", rest)
        if name in _KEYWORDS or is_call:
            continue  # a keyword, or a function or aggregation: sum by (le) (...)
        before = text[: m.start()].rstrip()
        if re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", before):
            continue  # a label inside by (...), not a metric
        labels = dict(re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', matchers))
        found.append((name, labels))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Every label of a ``by (...)`` or ``without (...)`` clause in ``expr``."""
    return {
        label.strip()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }


def assert_exported(
    where: str,
    expr: str,
    samples: dict[str, tuple[str, set[str], set[str]]],
    recorded: dict[str, set[str]] | None = None,
) -> None:
    """``expr`` names only series the workers export (``samples``), Prometheus' own, or
    ``recorded`` ones (recording rule name → its labels), with labels they have."""
    recorded = recorded or {}
    selectors = promql_selectors(expr)
    assert selectors, f"{where}: no metric in {expr}"
    allowed_by = set(TARGET_LABELS)
    for name, labels in selectors:
        if name in PROMETHEUS_BUILTINS:
            allowed_by |= set(labels)
            continue
        if name in recorded:
            unknown = set(labels) - recorded[name] - TARGET_LABELS
            assert not unknown, f"{where}: recorded {name} has no label {sorted(unknown)}"
            allowed_by |= recorded[name]
            continue
        assert name in samples, f"{where}: {name} is not in cxpulse.streams.metrics.REGISTRY"
        _, known, bounds = samples[name]
        unknown = set(labels) - known - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"
        if "le" in labels:
            assert labels["le"] in bounds, f"{where}: {name} has no bucket le={labels['le']}"
        allowed_by |= known
    grouped = grouping_labels(expr)
    assert grouped <= allowed_by, f"{where}: grouping by unknown {grouped - allowed_by}"


def test_promql_names_only_metrics_and_labels_the_workers_export() -> None:
    samples = registry_metrics()
    exprs = promql_exprs()
    assert exprs
    for where, expr in exprs:
        assert_exported(where, expr, samples)


def test_every_metric_has_a_dashboard_panel() -> None:
    used = {name for _, expr in promql_exprs() for name, _ in promql_selectors(expr)}
    families = {family for name, (family, _, _) in registry_metrics().items() if name in used}
    missing = {family for family, _, _ in registry_metrics().values()} - families
    assert not missing, (
        f"metrics without a panel: {sorted(missing)}: add them to "
        "deploy/grafana/dashboards/pipeline-health.json"
    )


def test_promql_parses_with_promtool(tmp_path: Path) -> None:
    tool = promtool()
    rules = []
    for i, (_, expr) in enumerate(promql_exprs()):
        concrete = (
            expr.replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
        )
        assert "$" not in concrete, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"cxpulse_dashboard:expr_{i}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- alerting rules ------------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_alerting_rules_pass_promtool_check() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerting_rules_pass_their_promtool_unit_tests() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerting_rules_name_only_metrics_the_workers_export() -> None:
    """Every metric a rule names is a series of ``cxpulse.streams.metrics.REGISTRY`` (with its
    labels), Prometheus' ``up``, or a recording rule of the same file: a renamed metric
    fails here, not as an alert that can never fire."""
    samples = registry_metrics()
    assert "cxpulse_ready" in samples and "cxpulse_sink_failures_total" in samples
    recorded = {r["record"]: grouping_labels(r["expr"]) for r in load_rules() if "record" in r}
    for name in recorded:
        assert re.fullmatch(r"cxpulse:\w+:\w+", name), f"{name}: level:metric:operations"
    for rule in load_rules():
        where = f"{RULES.name}: {rule.get('alert') or rule.get('record')}"
        assert_exported(where, rule["expr"], samples, recorded)
        for name, labels in promql_selectors(rule["expr"]):
            if name == "up":
                assert labels.get("job") == WORKER_JOB, f"{where}: up{{job={WORKER_JOB!r}}}"


def test_alerting_rules_cover_the_pipeline_with_severity_and_a_runbook() -> None:
    rules = alerting_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names), "duplicate alert names"
    missing = set(REQUIRED_ALERTS) - set(names)
    assert not missing, f"no alert for {[REQUIRED_ALERTS[m] for m in sorted(missing)]}"
    anchors = markdown_anchors(OPERATIONS.read_text())
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Cxpulse[A-Z]\w+", name), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes.get("summary") and notes.get("description"), name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor == name.lower(), f"{name}: runbook"
        assert anchor in anchors, f"{name}: docs/operations.md has no section {name}"


def test_every_alert_has_unit_tests_that_fire_it_and_that_do_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules()}
    assert names <= fired, f"never fired in {RULE_TESTS.name}: {sorted(names - fired)}"
    assert names <= quiet, f"never checked quiet in {RULE_TESTS.name}: {sorted(names - quiet)}"


def test_prometheus_loads_the_rules(compose: dict[str, Any]) -> None:
    for config_file in PROMETHEUS_CONFIGS:
        config = yaml.safe_load(config_file.read_text())
        assert config["rule_files"] == ["rules/cxpulse.yml"], config_file.name
        assert (config_file.parent / "rules" / "cxpulse.yml").is_file()
        jobs = [job["job_name"] for job in config["scrape_configs"]]
        assert WORKER_JOB in jobs, f"{config_file.name}: the rules need job {WORKER_JOB}"
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    config_dir = Path(mounts["./deploy/prometheus/prometheus.yml"]).parent
    assert mounts["./deploy/prometheus/rules"] == str(config_dir / "rules")


# --- ClickHouse SQL ------------------------------------------------------------------

FROM_TIME, TO_TIME = "toDateTime(1700000000)", "toDateTime(2000000000)"


def _macro_args(sql: str, start: int) -> tuple[list[str], int]:
    """Split the parenthesised, comma-separated arguments starting at ``sql[start]``."""
    assert sql[start] == "("
    depth, args, current = 0, [], ""
    for i in range(start, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    raise AssertionError(f"unbalanced macro in {sql}")


MACROS = {
    "$__timeFilter": lambda a: f"({a[0]} >= {FROM_TIME} AND {a[0]} <= {TO_TIME})",
    "$__dateFilter": lambda a: f"({a[0]} >= toDate({FROM_TIME}) AND {a[0]} <= toDate({TO_TIME}))",
    "$__timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL 60 second)",
    "$__conditionalAll": lambda a: f"({a[0]})",
}
VARIABLES = {
    "${tier:singlequote}": "'A', 'B'",
    "$tier": "A",
    "$__interval_s": "60",
    "$__fromTime": FROM_TIME,
    "$__toTime": TO_TIME,
}


def expand_grafana_sql(sql: str) -> str:
    """Grafana's ClickHouse macros and this dashboard's variables as plain SQL."""
    changed = True
    while changed:
        changed = False
        for macro, render in MACROS.items():
            at = sql.find(macro + "(")
            if at >= 0:
                args, end = _macro_args(sql, at + len(macro))
                sql = sql[:at] + render(args) + sql[end:]
                changed = True
    for name in sorted(VARIABLES, key=len, reverse=True):
        sql = sql.replace(name, VARIABLES[name])
    assert "$" not in sql, f"unknown Grafana macro or variable left in: {sql}"
    return sql


def clickhouse_queries() -> list[tuple[str, str]]:
    return [(f"{f}: {title}", t["rawSql"]) for f, title, t in targets(CH_TYPE)]


CH_TYPE = "grafana-clickhouse-datasource"


def test_dashboard_sql_names_only_cxpulse_tables() -> None:
    known = {spec.name for spec in SPECS} | EXTRA_TABLES
    queries = clickhouse_queries()
    assert len(queries) >= 10
    named = set()
    for where, sql in queries:
        tables = re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", sql, re.I)
        assert tables, f"{where}: no table"
        for table in tables:
            named.add(table.rsplit(".", 1)[-1])
            assert table.rsplit(".", 1)[-1] in known, f"{where}: unknown table {table}"
    # The customer-experience views and tables the issue asks for are all on a dashboard.
    wanted = {"score_distribution", "emotion_map", "key_experiences", "customer_scores"}
    assert wanted | {"score_history", "alerts", "open_alerts", "alert_volume"} <= named


@pytest.fixture(scope="module")
def schema_backend(chdb_backend: Backend) -> Backend:
    chdb_backend.ensure_schema()
    return chdb_backend


@pytest.mark.parametrize("where, sql", clickhouse_queries(), ids=lambda v: str(v)[:60])
def test_dashboard_sql_runs_on_the_real_schema(
    schema_backend: Backend, where: str, sql: str
) -> None:
    """On a read-only session (readonly = 1, as Grafana's ClickHouse user has): a query
    that needed a write or a SETTINGS clause would fail here too."""
    columns, _ = schema_backend.read_only().query(expand_grafana_sql(sql))  # type: ignore[attr-defined]
    assert columns, where


def test_time_series_queries_put_a_time_column_first() -> None:
    for _, title, target in targets(CH_TYPE):
        if target.get("format") == 0:
            assert re.match(r"SELECT\s+\S.*?\bAS time\b", target["rawSql"], re.S), title


def test_macro_expansion_is_faithful_enough() -> None:
    sql = "SELECT 1 WHERE $__timeFilter(a) AND $__conditionalAll(t IN (${tier:singlequote}), $tier)"
    assert expand_grafana_sql(sql) == (
        f"SELECT 1 WHERE (a >= {FROM_TIME} AND a <= {TO_TIME}) AND (t IN ('A', 'B'))"
    )


# --- the operations guide ------------------------------------------------------------


def test_operations_guide_covers_the_stack(compose: dict[str, Any]) -> None:
    text = OPERATIONS.read_text()
    for name in compose["services"]:
        assert f"`{name}`" in text, f"docs/operations.md does not mention service {name}"
    for dashboard in load_dashboards().values():
        assert dashboard["title"] in text, f"docs/operations.md: {dashboard['title']}"
    assert "--profile simulator" in text
    assert "(alerts.md)" in text
