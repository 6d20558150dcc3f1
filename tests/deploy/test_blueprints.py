"""The deployment files hold together: render.yaml by Render's blueprint rules, the Kubernetes manifests and the
systemd units by their essentials, deploy/compose.yaml by Compose itself; and every CHROMA_HA_* variable any of
them sets is a setting of the gateway, with a value its rules accept."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from chroma_ha.errors import SettingsError
from chroma_ha.settings import DEFINITIONS, ENV_PREFIX, Settings
from tests.deploy.docker import Daemon, compose_command

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VARIABLES = {d.variable for d in DEFINITIONS}
SECRETS = {"CHROMA_HA_ADMIN_TOKEN", "CHROMA_HA_SLACK_WEBHOOK", "CHROMA_HA_ALERT_WEBHOOK"}

# Render's blueprint rules, from its Blueprint YAML reference.
RENDER_ROOT_KEYS = {"services", "databases", "envVarGroups", "previews", "projects", "ungrouped"}
RENDER_SERVICE_TYPES = {"web", "pserv", "worker", "cron", "keyvalue", "redis"}
RENDER_RUNTIMES = {"docker", "image", "node", "python", "ruby", "go", "rust", "elixir", "static"}
RENDER_DISK_TYPES = {"web", "pserv", "worker"}  # a cron job or a key value store has no disk
RENDER_DATABASE_PROPERTIES = {"connectionString", "host", "port", "database", "user", "password"}
RENDER_SERVICE_PROPERTIES = {"host", "port", "hostport", "connectionString"}
RENDER_ENV_SOURCES = {"value", "generateValue", "sync", "fromDatabase", "fromService"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _settings_accept(env: dict[str, str]) -> None:
    """Every CHROMA_HA_* variable is a setting, and the whole set loads (placeholders stand for generated values)."""
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in VARIABLES)
    assert unknown == [], f"not settings of the gateway: {unknown}"
    try:
        Settings.load({}, env={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    except SettingsError as exc:
        pytest.fail(f"the settings do not load: {exc}")


# --- Render ---------------------------------------------------------------------------------------------------


def render_problems(blueprint: dict[str, Any], repo: Path) -> list[str]:
    """What Render would refuse in a blueprint, or what would not run: one line per problem."""
    problems = [f"unknown root key {k}" for k in blueprint if k not in RENDER_ROOT_KEYS]
    services = blueprint.get("services", [])
    databases = {d["name"] for d in blueprint.get("databases", [])}
    names = [s.get("name") for s in services] + sorted(databases)
    problems += [f"name {n} used twice" for n in set(names) if names.count(n) > 1]
    by_name = {s.get("name"): s for s in services}
    for s in services:
        where = f"service {s.get('name')}"
        kind, runtime = s.get("type"), s.get("runtime")
        if kind not in RENDER_SERVICE_TYPES:
            problems.append(f"{where}: type {kind!r} is not one of {sorted(RENDER_SERVICE_TYPES)}")
        if runtime not in RENDER_RUNTIMES:
            problems.append(f"{where}: runtime {runtime!r}")
        if runtime == "docker":
            if not (repo / s.get("dockerfilePath", "./Dockerfile")).is_file():
                problems.append(f"{where}: no Dockerfile at {s.get('dockerfilePath')}")
            if not (repo / s.get("dockerContext", ".")).is_dir():
                problems.append(f"{where}: no docker context {s.get('dockerContext')}")
        if runtime == "image":
            url = s.get("image", {}).get("url", "")
            if ":" not in url.rsplit("/", 1)[-1] or url.endswith(":latest"):
                problems.append(f"{where}: image {url!r} is not pinned to a version")
        if "healthCheckPath" in s and (kind != "web" or not str(s["healthCheckPath"]).startswith("/")):
            problems.append(f"{where}: healthCheckPath only on a web service, as a path")
        if "disk" in s:
            disk = s["disk"]
            if kind not in RENDER_DISK_TYPES:
                problems.append(f"{where}: a {kind} service cannot have a disk")
            if not {"name", "mountPath"} <= disk.keys() or not str(disk["mountPath"]).startswith("/"):
                problems.append(f"{where}: a disk needs a name and an absolute mountPath")
            if s.get("numInstances", 1) > 1 or "scaling" in s:
                problems.append(f"{where}: a service with a disk runs one instance")
        for env in s.get("envVars", []):
            problems += [f"{where}: {p}" for p in _render_env_problems(env, databases, by_name)]
    return problems


def _render_env_problems(env: dict[str, Any], databases: set[str], services: dict[str, Any]) -> list[str]:
    if "fromGroup" in env:
        return [] if set(env) == {"fromGroup"} else [f"fromGroup stands alone: {env}"]
    key = env.get("key")
    sources = [k for k in env if k in RENDER_ENV_SOURCES]
    problems = [] if key else [f"an env var without a key: {env}"]
    if len(sources) != 1:
        return [*problems, f"{key}: needs exactly one source, has {sources}"]
    source = sources[0]
    if source == "value" and not isinstance(env["value"], str | int | float | bool):
        problems.append(f"{key}: a value is a scalar")
    if source == "sync" and env["sync"] is not False:
        problems.append(f"{key}: sync is only ever false")
    if source == "generateValue" and env["generateValue"] is not True:
        problems.append(f"{key}: generateValue is only ever true")
    if source == "fromDatabase":
        ref = env["fromDatabase"]
        if ref.get("name") not in databases:
            problems.append(f"{key}: fromDatabase names no database of the blueprint: {ref.get('name')}")
        if ref.get("property") not in RENDER_DATABASE_PROPERTIES:
            problems.append(f"{key}: fromDatabase property {ref.get('property')!r}")
    if source == "fromService":
        ref = env["fromService"]
        target = services.get(ref.get("name"))
        if target is None or target.get("type") != ref.get("type"):
            problems.append(f"{key}: fromService names no {ref.get('type')} service {ref.get('name')}")
        if ("property" in ref) == ("envVarKey" in ref) or ref.get("property", "host") not in RENDER_SERVICE_PROPERTIES:
            problems.append(f"{key}: fromService takes one property or envVarKey")
    if key in SECRETS and source == "value":
        problems.append(f"{key}: a secret is sync: false or generated, never written in the blueprint")
    return problems


def test_render_blueprint_follows_renders_rules() -> None:
    assert render_problems(_load(ROOT / "render.yaml"), ROOT) == []


def test_render_rules_catch_what_render_refuses() -> None:
    """The checker finds each kind of mistake (it would pass anything otherwise)."""
    good = _load(ROOT / "render.yaml")
    gateway = next(s for s in good["services"] if s["type"] == "web")
    broken = {
        **good,
        "services": [
            {**gateway, "disk": {"name": "d", "mountPath": "/data"}},  # a disk on a service of 2 instances
            {"type": "cron", "name": "c", "runtime": "docker", "disk": {"name": "e", "mountPath": "/x"}},
            {
                "type": "pserv",
                "name": "p",
                "runtime": "image",
                "image": {"url": "docker.io/chromadb/chroma:latest"},
                "envVars": [
                    {"key": "CHROMA_HA_STORE", "fromDatabase": {"name": "nowhere", "property": "connectionString"}},
                    {"key": "CHROMA_HA_ADMIN_TOKEN", "value": "written-down"},
                    {"key": "X", "fromService": {"type": "pserv", "name": "absent", "property": "hostport"}},
                    {"key": "Y", "value": "1", "sync": False},
                ],
            },
        ],
    }
    problems = "\n".join(render_problems(broken, ROOT))
    for expected in (
        "a service with a disk runs one instance",
        "a cron service cannot have a disk",
        "is not pinned",
        "fromDatabase names no database",
        "never written in the blueprint",
        "fromService names no pserv service absent",
        "needs exactly one source",
    ):
        assert expected in problems


def test_render_blueprint_wires_the_gateway() -> None:
    blueprint = _load(ROOT / "render.yaml")
    services = {s["name"]: s for s in blueprint["services"]}
    gateway = next(s for s in services.values() if s["type"] == "web")
    assert gateway["runtime"] == "docker" and gateway["healthCheckPath"] == "/health"
    env = {e["key"]: e for e in gateway["envVars"]}
    assert env["CHROMA_HA_STORE"]["fromDatabase"]["property"] == "connectionString"
    chromas = [s for s in services.values() if s["type"] == "pserv"]
    assert len(chromas) == 2 and all("disk" in s for s in chromas)
    assert all(s["image"]["url"].endswith(f":{version('chromadb')}") for s in chromas)
    # each Chroma service's address reaches the gateway's command
    for s in chromas:
        key = next(k for k, e in env.items() if e.get("fromService", {}).get("name") == s["name"])
        assert f"$${key}" not in gateway["dockerCommand"] and f"${key}" in gateway["dockerCommand"]
    # the gateway listens where Render sends traffic
    assert env["CHROMA_HA_PORT"]["value"] == env["PORT"]["value"] and env["CHROMA_HA_HOST"]["value"] == "0.0.0.0"
    placeholders = {"CHROMA_HA_STORE": "postgresql://u:p@db/chroma_ha", "CHROMA_HA_ADMIN_TOKEN": "t"}
    _settings_accept(
        {k: str(e.get("value", placeholders.get(k, ""))) for k, e in env.items() if "value" in e or k in placeholders}
    )


# --- Kubernetes -------------------------------------------------------------------------------------------------


def _manifests() -> list[dict[str, Any]]:
    return [d for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def test_kubernetes_manifests_hold_together() -> None:
    docs = _manifests()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= d.keys(), d
        by_kind.setdefault(d["kind"], []).append(d)
    (gateway,) = by_kind["Deployment"]
    (chroma,) = by_kind["StatefulSet"]
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}

    assert gateway["spec"]["replicas"] >= 2
    for workload in (gateway, chroma):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert any(s["spec"]["selector"].items() <= labels.items() for s in services.values())
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"

    headless = services[chroma["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert chroma["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"] for m in chroma["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert chroma["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{version('chromadb')}")

    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]]["stringData"], ref
            env[e["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
        else:
            env[e["name"]] = "from-the-pod"
    assert env["CHROMA_HA_STORE"].startswith("postgresql://")
    # the instances are the StatefulSet's pods at their stable names
    replicas = chroma["spec"]["replicas"]
    assert env["CHROMA_HA_INSTANCES"] == ",".join(
        f"http://{chroma['metadata']['name']}-{n}.{headless['metadata']['name']}:8000" for n in range(replicas)
    )
    _settings_accept(env)


# --- systemd ----------------------------------------------------------------------------------------------------


def test_systemd_units_run_the_installed_commands() -> None:
    units = {p.name: p for p in (DEPLOY / "systemd").glob("*.service")}
    assert set(units) == {"chroma-ha.service", "chroma@.service"}
    for path in units.values():
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read_string(path.read_text())
        assert unit["Service"]["User"] and unit["Service"]["Restart"] == "always"
        assert unit["Install"]["WantedBy"] == "multi-user.target"
    gateway = configparser.ConfigParser(strict=False, interpolation=None)
    gateway.read_string(units["chroma-ha.service"].read_text())
    assert gateway["Service"]["ExecStart"].split()[1:] == ["serve"]
    assert f"chromadb=={version('chromadb')}" in units["chroma@.service"].read_text()
    # systemd reads $NAME itself: the shell's arithmetic must be written $$((...))
    chroma = units["chroma@.service"].read_text()
    assert "$((" not in chroma.replace("$$((", "")
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd/gateway.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    _settings_accept(example)


# --- Compose ----------------------------------------------------------------------------------------------------

COMPOSE_ENV = {"POSTGRES_PASSWORD": "pw", "CHROMA_HA_ADMIN_TOKEN": "token"}


def test_compose_file_is_valid_for_compose(docker_daemon: Daemon) -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env={**os.environ, **COMPOSE_ENV},
        cwd=DEPLOY,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"chroma-0", "chroma-1", "postgres", "gateway-1", "gateway-2", "lb"} <= services.keys()
    for name in ("chroma-0", "chroma-1", "postgres"):
        volume = services[name]["volumes"][0]
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        assert source in config["volumes"], name  # a named volume
    for name in ("chroma-0", "chroma-1"):
        assert services[name]["image"] == f"chromadb/chroma:{version('chromadb')}"
    for name, service in services.items():
        assert re.search(r":[0-9]", service["image"] or "") or "build" in service, f"{name}: image not pinned"
        assert "healthcheck" in service or name.startswith("gateway"), name  # the gateway's is in its image
    for name in ("gateway-1", "gateway-2"):
        env = services[name]["environment"]
        assert env["CHROMA_HA_ADMIN_TOKEN"] == "token" and "pw@postgres" in env["CHROMA_HA_STORE"]
        _settings_accept({k: str(v) for k, v in env.items() if v not in (None, "")})
    assert [p for p in services if services[p].get("ports")] == ["lb"]  # only the load balancer is published


def test_compose_refuses_to_start_without_its_secrets(docker_daemon: Daemon) -> None:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    result = subprocess.run(
        [*compose_command(), "-f", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=DEPLOY,
    )
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr + result.stdout
