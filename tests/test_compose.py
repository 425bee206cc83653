"""docker-compose.yml, checked where Docker cannot run: consistent, pinned, and its configs valid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from xds.config import load_config, parse_listen
from xds.demo.certs import write_certs
from xds.plan import broker_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def _properties(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def _mounted_files(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((REPO / source, target))
    return mounts


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", base.group(1)), base.group(1)


def _zookeeper_brokers(compose: dict[str, Any]) -> list[str]:
    return [name for name in compose["services"] if re.fullmatch(r"kafka-\d+", name)]


def _kraft_nodes(compose: dict[str, Any]) -> list[str]:
    return [name for name in compose["services"] if re.fullmatch(r"kafka-b-\d+", name)]


@pytest.mark.parametrize("service", ["kafka-xds", "kafka-xds-kraft"])
def test_every_mounted_file_exists_and_kafka_xds_config_passes_check_config(compose, service, tmp_path):
    for name, definition in compose["services"].items():
        for source, _ in _mounted_files(definition):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
    ((config_path, _),) = _mounted_files(compose["services"][service])
    assert "certs:/certs:ro" in compose["services"][service]["volumes"]
    # What the certs job writes to /certs (the debug token among it), here in a folder of our own.
    write_certs(tmp_path / "certs", [], "sidecar.kafka-xds.demo")
    local = tmp_path / "config.yaml"
    local.write_text(config_path.read_text().replace("/certs/", f"{tmp_path / 'certs'}/"))
    result = subprocess.run(
        [sys.executable, "-m", "xds", "check-config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_brokers_advertise_what_the_plan_says(compose):
    ((config_path, _),) = _mounted_files(compose["services"]["kafka-xds"])
    config = load_config(config_path)
    cluster = config.kafka_clusters[0]
    assert cluster.zookeeper is not None
    brokers = _zookeeper_brokers(compose)
    assert len(brokers) == 3
    for name in brokers:
        ((properties_path, _),) = _mounted_files(compose["services"][name])
        properties = _properties(properties_path)
        broker_id = int(properties["broker.id"])
        advertised = dict(item.split("://") for item in properties["advertised.listeners"].split(","))
        listeners = dict(item.split("://") for item in properties["listeners"].split(","))
        planned = f"{cluster.loopback_ip}:{broker_port(cluster, broker_id)}"
        assert advertised[cluster.client_listener or ""] == planned, name
        assert advertised[cluster.upstream_listener].split(":")[0] == name  # the host kafka-xds resolves
        assert listeners[cluster.client_listener or ""].endswith(f":{cluster.upstream_port}")  # MESH's port
        hosts, _, chroot = properties["zookeeper.connect"].partition("/")
        assert (hosts, "/" + chroot) == (cluster.zookeeper.hosts, cluster.zookeeper.chroot)
        assert properties["ssl.client.auth"] == "required"


def test_sidecar_and_client_use_the_planned_addresses_and_the_real_ports(compose):
    ((config_path, _),) = _mounted_files(compose["services"]["kafka-xds"])
    config = load_config(config_path)
    services = compose["services"]
    xds_port = parse_listen(config.xds.listen)[1]
    assert f"--xds kafka-xds:{xds_port}" in " ".join(services["bootstrap"]["entrypoint"])
    debug_port = parse_listen(config.debug.listen)[1]
    assert services["kafka-xds"]["ports"] == [f"127.0.0.1:{debug_port}:{debug_port}"]
    assert services["envoy"]["network_mode"] == services["client"]["network_mode"] == "service:app"
    cluster = config.kafka_clusters[0]
    assert f"-b {cluster.loopback_ip}:{broker_port(cluster, 1)}" in services["client"]["command"][0]


def test_the_kraft_profile_runs_a_three_node_kraft_cluster_that_kafka_xds_follows_through_metadata(compose):
    services = compose["services"]
    kraft_services = {name for name, service in services.items() if "kraft" in service.get("profiles", [])}
    nodes = _kraft_nodes(compose)
    assert len(nodes) == 3
    assert kraft_services == {
        *nodes,
        "kafka-xds-kraft",
        "bootstrap-kraft",
        "app-kraft",
        "envoy-kraft",
        "client-kraft",
    }
    for name in set(services) - kraft_services:  # the default stack does not depend on the profile
        depends = services[name].get("depends_on", [])
        assert not kraft_services & set(depends), name
    ((config_path, _),) = _mounted_files(services["kafka-xds-kraft"])
    config = load_config(config_path)
    (cluster,) = config.kafka_clusters
    assert cluster.kraft is not None
    assert int(services[nodes[0]]["image"].split(":")[1].split(".")[0]) >= 4  # Kafka 4.x: no ZooKeeper
    voters = set()
    for name in nodes:
        ((properties_path, _),) = _mounted_files(services[name])
        properties = _properties(properties_path)
        node_id = int(properties["node.id"])
        assert "zookeeper.connect" not in properties
        assert properties["process.roles"] == "broker,controller"
        voters.add(properties["controller.quorum.voters"])
        listeners = dict(item.split("://") for item in properties["listeners"].split(","))
        advertised = dict(item.split("://") for item in properties["advertised.listeners"].split(","))
        # kafka-xds asks the upstream listener, whose advertised host is the node's name ...
        upstream = advertised[cluster.upstream_listener]
        assert upstream in cluster.kraft.bootstrap_servers and upstream.startswith(name + ":")
        # ... and sends sidecars to the MESH port on that host, which requires a client certificate.
        assert listeners["MESH"].endswith(f":{cluster.kraft.upstream_port}")
        assert properties["listener.security.protocol.map"].count("MESH:SSL") == 1
        assert properties["ssl.client.auth"] == "required"
        # Clients see the plan's loopback addresses: MESH advertises them.
        assert advertised["MESH"] == f"{cluster.loopback_ip}:{broker_port(cluster, node_id)}"
    assert len(voters) == 1  # every node names the same quorum
    assert f"--xds kafka-xds-kraft:{parse_listen(config.xds.listen)[1]}" in " ".join(
        services["bootstrap-kraft"]["entrypoint"]
    )
    assert f"-b {cluster.loopback_ip}:{broker_port(cluster, 1)}" in services["client-kraft"]["command"][0]
    assert (
        services["envoy-kraft"]["network_mode"]
        == services["client-kraft"]["network_mode"]
        == "service:app-kraft"
    )


def test_certificate_files_the_configs_name_are_made_by_the_certs_job(compose, tmp_path):
    entrypoint = compose["services"]["certs"]["entrypoint"]
    brokers = [entrypoint[i + 1] for i, arg in enumerate(entrypoint) if arg == "--broker"]
    write_certs(tmp_path, brokers, "sidecar.kafka-xds.demo")
    made = {path.name for path in tmp_path.iterdir()}
    ((config_path, _),) = _mounted_files(compose["services"]["kafka-xds"])
    tls = load_config(config_path).upstream_tls
    assert tls is not None
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        assert Path(path).name in made and path.startswith("/certs/")
    for name in _zookeeper_brokers(compose) + _kraft_nodes(compose):
        assert name in brokers
        ((properties_path, _),) = _mounted_files(compose["services"][name])
        properties = _properties(properties_path)
        assert Path(properties["ssl.keystore.location"]).name in made
        assert Path(properties["ssl.truststore.location"]).name in made


def test_kubernetes_manifests_parse_and_embed_a_valid_config():
    from xds.config import parse_config

    documents = [
        document
        for path in sorted((REPO / "config" / "kubernetes").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    kinds = {document["kind"] for document in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "StatefulSet", "ConfigMap", "Pod"} <= kinds
    deployment = next(document for document in documents if document["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    config_map = next(document for document in documents if document["kind"] == "ConfigMap")
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.kafka_clusters[0].upstream_port == 9094
    for document in documents:
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", container["image"]), container["image"]


def test_the_image_installs_exact_versions_of_everything():
    """A rebuild of the Dockerfile installs the software that was tested, not whatever is newest."""
    import tomllib

    from packaging.requirements import Requirement

    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--constraint constraints.txt" in dockerfile
    assert "constraints.txt" in dockerfile.split("COPY", 1)[1]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned exactly: {line}"
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["certs"]]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
