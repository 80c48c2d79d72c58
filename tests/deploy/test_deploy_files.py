"""The deployment files, checked statically (no container engine runs here): they parse,
and their ports, paths, probes, environment and config keys agree with the code and with
the config they ship (which must validate), and with each other."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from otedama.config import ENV_OVERRIDES, Config, load_config, refused_start
from otedama.tap import default_config_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = ROOT / "deploy" / "otedama.yaml"
K8S = ROOT / "deploy" / "k8s"
PLACEHOLDER_ONLY = "pool.wallet_address"


# -- readers ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [rest for instruction, rest in dockerfile() if instruction == name]


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that runs)."""
    steps = dockerfile()
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def exec_form(rest: str) -> list[str]:
    value = yaml.safe_load(rest)
    assert isinstance(value, list), f"expected the exec form (JSON array), got {rest}"
    return [str(item) for item in value]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest under deploy/k8s by (kind, name)."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and document.get("kind") != "Kustomization":
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def deploy_config() -> Config:
    return load_config(DEPLOY_CONFIG, env={})


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = k8s()[("Deployment", "otedama")]["spec"]["template"]["spec"]
    return spec


def node_container() -> dict[str, Any]:
    [container] = [c for c in pod()["containers"] if c["name"] == "otedama"]
    return container


def listen_ports(config: Config) -> dict[str, int]:
    """What the node listens on with ``config`` (by the names the manifests use)."""
    return {
        "stratum": config.stratum.address.port,
        "api": config.api.address.port,
        "metrics": config.monitoring.metrics.address.port,
        "health": config.monitoring.health.address.port,
    }


# -- the shipped configs ---------------------------------------------------------------


@pytest.mark.parametrize("path", [ROOT / "etc" / "production.yaml", DEPLOY_CONFIG], ids=str)
def test_the_shipped_production_configs_validate_and_refuse_only_their_placeholders(
    path: Path,
) -> None:
    config = load_config(path, env={})  # raises ConfigError listing any problem
    refused = refused_start(config)
    assert refused and all("is a placeholder" in line for line in refused), refused
    if path == DEPLOY_CONFIG:
        assert [line.split(":")[0] for line in refused] == [PLACEHOLDER_ONLY]


def test_the_container_config_listens_on_every_interface_where_probes_and_peers_reach_it() -> None:
    config = deploy_config()
    assert config.monitoring.health.enabled
    for address in (config.stratum.address, config.monitoring.health.address):
        assert address.host == "0.0.0.0"


def test_the_configmap_carries_the_container_config_word_for_word() -> None:
    configmap = k8s()[("ConfigMap", "otedama-config")]
    assert configmap["data"]["otedama.yaml"] == DEPLOY_CONFIG.read_text(encoding="utf-8")


def test_the_secrets_come_in_through_the_environment_the_config_reads() -> None:
    config = deploy_config()
    overrides = set(ENV_OVERRIDES)
    assert set(compose()["services"]["otedama"]["environment"]) <= overrides
    secret = k8s()[("Secret", "otedama")]["stringData"]
    assert {key for key in secret if key.isupper()} <= overrides
    with_url = load_config(DEPLOY_CONFIG, env={"DATABASE_URL": secret["DATABASE_URL"]})
    assert with_url.database_url.startswith("postgresql")
    assert config.database.password == ""  # no secret in the shipped file


# -- Dockerfile ------------------------------------------------------------------------


def test_the_dockerfile_builds_in_two_stages_and_runs_as_a_user_that_is_not_root() -> None:
    assert len(instructions("FROM")) >= 2
    assert any("--from=build" in rest for rest in instructions("COPY"))
    users = [rest for instruction, rest in runtime_stage() if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    [uid_arg] = [rest for instruction, rest in runtime_stage() if instruction == "ARG"]
    uid = uid_arg.split("=")[1]
    assert str(pod()["securityContext"]["runAsUser"]) == uid
    assert pod()["securityContext"]["runAsNonRoot"] is True


def test_the_dockerfile_exposes_every_port_the_node_listens_on() -> None:
    exposed = {item for rest in instructions("EXPOSE") for item in rest.split()}
    config = deploy_config()
    for port in listen_ports(config).values():
        assert str(port) in exposed
    federation = config.federation.listen_port
    assert {str(federation), f"{federation}/udp"} <= exposed


def test_the_health_check_asks_the_configured_health_endpoint() -> None:
    [healthcheck] = instructions("HEALTHCHECK")
    health = deploy_config().monitoring.health
    command = exec_form(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"
    assert f"http://127.0.0.1:{health.address.port}{health.path}" in command[-1]


def test_the_image_starts_the_node_with_the_config_where_it_is_copied() -> None:
    [entrypoint] = instructions("ENTRYPOINT")
    [cmd] = instructions("CMD")
    argv = exec_form(entrypoint) + exec_form(cmd)
    # No --reactor: the plugin installs Otedama's lean asyncio reactor itself (twistd's
    # --reactor=asyncio would install Twisted's stock one first; see otedama.ops.reactor).
    assert argv[0] == "twistd" and "--nodaemon" in argv
    assert not any(arg.startswith("--reactor") for arg in argv)
    plugin = (ROOT / "twisted" / "plugins" / "otedama_plugin.py").read_text()
    assert f'"{argv[argv.index("--config") - 1]}",\n)' in plugin  # the plugin's tapname
    config_path = argv[argv.index("--config") + 1]
    copied = [rest.split() for rest in instructions("COPY") if "otedama.yaml" in rest]
    assert copied == [["deploy/otedama.yaml", config_path]]
    env = " ".join(instructions("ENV"))
    assert f"OTEDAMA_CONFIG={config_path}" in env
    assert default_config_path({"OTEDAMA_CONFIG": config_path}) == config_path


def test_the_image_keeps_the_data_dir_on_a_volume_the_node_user_owns() -> None:
    data_dir = str(deploy_config().app.data_dir)
    assert exec_form(instructions("VOLUME")[0]) == [data_dir]
    runs = " ".join(instructions("RUN"))
    assert f"chown otedama:otedama {data_dir}" in runs
    assert instructions("WORKDIR")[-1] == data_dir


# -- docker-compose.yml ----------------------------------------------------------------


def test_compose_runs_the_node_with_postgresql_and_redis_after_migrating() -> None:
    services = compose()["services"]
    assert {"otedama", "postgres", "redis", "migrate"} <= set(services)
    node = services["otedama"]
    assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert node["depends_on"]["postgres"]["condition"] == "service_healthy"
    migrate = services["migrate"]
    assert migrate["entrypoint"] + migrate["command"][:2] == ["otedama", "migrate", "up"]
    url = node["environment"]["DATABASE_URL"]
    assert "@postgres:5432/" in url and url.endswith(
        "/" + services["postgres"]["environment"]["POSTGRES_DB"]
    )
    assert node["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_compose_publishes_the_ports_and_mounts_the_paths_the_node_uses() -> None:
    config = deploy_config()
    node = compose()["services"]["otedama"]
    published = {int(mapping.rsplit(":", 1)[1]) for mapping in node["ports"]}
    assert published == set(listen_ports(config).values())
    targets = {volume.split(":")[1] for volume in node["volumes"]}
    [cmd] = instructions("CMD")
    assert exec_form(cmd)[1] in targets
    assert str(config.app.data_dir) in targets
    [secret] = node["secrets"]
    assert [str(rpc.cookie_file) for rpc in config.chain.rpc] == [secret["target"]]


# -- Kubernetes ------------------------------------------------------------------------


def test_every_manifest_parses_and_kustomize_lists_them_all() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"
    )
    kinds = {kind for kind, _ in k8s()}
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= kinds


def test_the_probes_ask_the_health_endpoint_on_its_port() -> None:
    health = deploy_config().monitoring.health
    container = node_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == health.path
        assert ports[get["port"]] == health.address.port


def test_the_container_ports_and_services_agree_with_the_config() -> None:
    container = node_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == listen_ports(deploy_config())
    for (kind, _), manifest in k8s().items():
        if kind == "Service":
            assert manifest["spec"]["selector"] == pod_labels()
            for port in manifest["spec"]["ports"]:
                assert port["targetPort"] in ports


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = k8s()[("Deployment", "otedama")]["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def test_the_pod_mounts_the_config_secrets_and_data_where_the_config_expects_them() -> None:
    config = deploy_config()
    spec = pod()
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    secret = k8s()[("Secret", "otedama")]["stringData"]
    for container in [*spec["initContainers"], node_container()]:
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/etc/otedama.yaml"]["subPath"] == "otedama.yaml"
        assert volumes[mounts["/etc/otedama.yaml"]["name"]]["configMap"]["name"] == "otedama-config"
        assert str(config.app.data_dir) in mounts
        [cookie] = [str(rpc.cookie_file) for rpc in config.chain.rpc]
        directory, name = cookie.rsplit("/", 1)
        items = volumes[mounts[directory]["name"]]["secret"]["items"]
        assert [item["path"] for item in items] == [name]
        assert {item["key"] for item in items} <= set(secret)
        assert [source["secretRef"]["name"] for source in container["envFrom"]] == ["otedama"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in mounts
    [migrate] = spec["initContainers"]
    assert shlex.join(migrate["command"]) == "otedama migrate up --config /etc/otedama.yaml"
    assert node_container()["args"] == ["--config", "/etc/otedama.yaml"]
