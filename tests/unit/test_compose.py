"""docker-compose.yml and the image, checked where Docker cannot run: pinned, consistent with the
configs they embed, certificates where they are read."""

from __future__ import annotations

import posixpath
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.support.deployment import (
    REPO,
    option,
    option_values,
    parse_properties,
    readme_section,
    run_bootstrap,
    server_name,
    watched_directories,
    xds_tls_options,
)
from xds.config.model import Config, load_config
from xds.demo.certs import main as certs_job
from xds.serving.access import access_policy, admit, identity_of
from xds.shared.addresses import parse_listen

CERTIFICATE_KEYS = {"tls.crt", "tls.key", "ca.crt"}  # what a cert-manager Certificate's Secret holds
COMBINED_PEM = "tls-combined.pem"  # with additionalOutputFormats CombinedPEM: key and chain, one file
# Compose: each sidecar's bootstrap job, its Envoy, and the kafka-xds it is to reach.
SIDECARS = [("bootstrap", "envoy", "kafka-xds"), ("bootstrap-kraft", "envoy-kraft", "kafka-xds-kraft")]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def certs(compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the certs job writes to /certs: its own code with its own arguments, into a folder here."""
    entrypoint = compose["services"]["certs"]["entrypoint"]
    assert entrypoint[:4] == ["python", "-m", "xds.demo.certs", "/certs"]
    out = tmp_path_factory.mktemp("certs")
    assert certs_job([str(out), *entrypoint[4:]]) == 0
    return out


def _properties(path: Path) -> dict[str, str]:
    return parse_properties(path.read_text())


def _mounted_files(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((REPO / source, target))
    return mounts


def _service_config(compose: dict[str, Any], service: str) -> Config:
    ((config_path, _),) = _mounted_files(compose["services"][service])
    return load_config(config_path)


def _handshake(
    server: tuple[str, str, str], client: tuple[str, str, str], server_name: str
) -> list[tuple[str, str]]:
    """A real TLS handshake in memory between kafka-xds's files (cert, key, client CA) and a sidecar's
    (CA, cert, key), the sidecar checking `server_name`; the client certificate's SANs, as verified."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server[0], server[1])
    server_context.load_verify_locations(server[2])
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the chain and the host name
    client_context.load_verify_locations(client[0])
    client_context.load_cert_chain(client[1], client[2])
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_end = client_context.wrap_bio(client_in, client_out, server_hostname=server_name)
    server_end = server_context.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())  # what each end sent, to the other
        client_in.write(server_out.read())
        if all(done.values()):
            break
    assert all(done.values()), done
    peer = server_end.getpeercert()
    assert peer is not None
    names: Any = peer.get("subjectAltName", ())
    return [(str(kind), str(value)) for kind, value in names]


def _identity(names: list[tuple[str, str]]) -> str | None:
    """kafka-xds's identity of a verified client certificate, from its SANs as gRPC reports them."""
    context = {
        "peer_uri": [value.encode() for kind, value in names if kind == "URI"],
        "peer_dns": [value.encode() for kind, value in names if kind == "DNS"],
    }
    return identity_of(context)


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
def test_every_mounted_file_exists_and_kafka_xds_config_passes_check_config(
    compose, certs, service, tmp_path
):
    for name, definition in compose["services"].items():
        for source, _ in _mounted_files(definition):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
    ((config_path, _),) = _mounted_files(compose["services"][service])
    assert "certs:/certs:ro" in compose["services"][service]["volumes"]
    local = tmp_path / "config.yaml"
    local.write_text(config_path.read_text().replace("/certs/", f"{certs}/"))
    result = subprocess.run(
        [sys.executable, "-m", "xds", "check-config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_kafka_xds_in_compose_serves_ads_over_mtls_with_an_access_policy(compose):
    served = {}
    for service in compose["services"].values():
        if service.get("command", [None])[0] == "serve":
            ((config_path, _),) = _mounted_files(service)
            served[config_path.name] = load_config(config_path)
    assert set(served) == {path.name for path in (REPO / "config" / "compose").glob("*.yaml")}
    for name, config in served.items():
        assert config.xds.tls is not None and config.xds.tls.client_ca_file is not None, name
        assert config.access, name


def test_brokers_advertise_what_the_plan_says(compose):
    config = _service_config(compose, "kafka-xds")
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
        planned = f"{cluster.loopback_ip}:{cluster.broker_port(broker_id)}"
        assert advertised[cluster.client_listener or ""] == planned, name
        assert advertised[cluster.upstream_listener].split(":")[0] == name  # the host kafka-xds resolves
        assert listeners[cluster.client_listener or ""].endswith(f":{cluster.upstream_port}")  # MESH's port
        hosts, _, chroot = properties["zookeeper.connect"].partition("/")
        assert (hosts, "/" + chroot) == (cluster.zookeeper.hosts, cluster.zookeeper.chroot)
        assert properties["ssl.client.auth"] == "required"


def test_sidecar_and_client_use_the_planned_addresses_and_the_real_ports(compose):
    config = _service_config(compose, "kafka-xds")
    services = compose["services"]
    xds_port = parse_listen(config.xds.listen)[1]
    assert f"--xds kafka-xds:{xds_port}" in " ".join(services["bootstrap"]["entrypoint"])
    debug_port = parse_listen(config.debug.listen)[1]
    assert services["kafka-xds"]["ports"] == [f"127.0.0.1:{debug_port}:{debug_port}"]
    assert services["envoy"]["network_mode"] == services["client"]["network_mode"] == "service:app"
    cluster = config.kafka_clusters[0]
    assert f"-b {cluster.loopback_ip}:{cluster.broker_port(1)}" in services["client"]["command"][0]


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
    config = _service_config(compose, "kafka-xds-kraft")
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
        assert advertised["MESH"] == f"{cluster.loopback_ip}:{cluster.broker_port(node_id)}"
    assert len(voters) == 1  # every node names the same quorum
    assert f"--xds kafka-xds-kraft:{parse_listen(config.xds.listen)[1]}" in " ".join(
        services["bootstrap-kraft"]["entrypoint"]
    )
    assert f"-b {cluster.loopback_ip}:{cluster.broker_port(1)}" in services["client-kraft"]["command"][0]
    assert (
        services["envoy-kraft"]["network_mode"]
        == services["client-kraft"]["network_mode"]
        == "service:app-kraft"
    )


def test_certificate_files_the_configs_and_bootstrap_jobs_name_are_made_by_the_certs_job(compose, certs):
    made = {path.name for path in certs.iterdir()}
    services = compose["services"]
    for bootstrap, envoy, server in SIDECARS:
        config = _service_config(compose, server)
        assert config.upstream_tls is not None and config.xds.tls is not None
        read_by_envoy = [
            config.upstream_tls.ca_file,
            config.upstream_tls.cert_file,
            config.upstream_tls.key_file,
            *xds_tls_options(services[bootstrap]["entrypoint"]).values(),
        ]
        read_by_kafka_xds = [config.xds.tls.cert_file, config.xds.tls.key_file, config.xds.tls.client_ca_file]
        for reader, paths in ((envoy, read_by_envoy), (server, read_by_kafka_xds)):
            assert "certs:/certs:ro" in services[reader]["volumes"], reader
            assert services[reader]["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
            for path in paths:
                assert path is not None and path.startswith("/certs/"), (reader, path)
                assert Path(path).name in made, (reader, path)
    entrypoint = services["certs"]["entrypoint"]
    for name in _zookeeper_brokers(compose) + _kraft_nodes(compose):
        assert name in option_values(entrypoint, "--broker")
        ((properties_path, _),) = _mounted_files(services[name])
        properties = _properties(properties_path)
        assert Path(properties["ssl.keystore.location"]).name in made
        assert Path(properties["ssl.truststore.location"]).name in made


@pytest.mark.parametrize(("bootstrap", "envoy", "server"), SIDECARS)
def test_compose_sidecars_complete_an_mtls_handshake_with_kafka_xds_and_may_see_its_cluster(
    compose, certs, bootstrap, envoy, server
):
    args = compose["services"][bootstrap]["entrypoint"]
    config = _service_config(compose, server)
    tls = config.xds.tls
    assert tls is not None and tls.client_ca_file is not None

    def local(path: str) -> str:
        return str(certs / Path(path).name)

    sidecar = xds_tls_options(args)
    assert parse_listen(option(args, "--xds"))[0] == server  # the compose service's name
    peer = _handshake(
        (local(tls.cert_file), local(tls.key_file), local(tls.client_ca_file)),
        (local(sidecar["--xds-ca"]), local(sidecar["--xds-cert"]), local(sidecar["--xds-key"])),
        server_name(args),
    )
    allowed = admit(_identity(peer), access_policy(config.access))
    assert allowed == frozenset(cluster.name for cluster in config.kafka_clusters)


@pytest.mark.parametrize(("bootstrap", "envoy", "server"), SIDECARS)
def test_compose_bootstrap_jobs_write_the_bootstrap_and_sds_files_where_their_sidecar_reads_them(
    compose, bootstrap, envoy, server, tmp_path
):
    services = compose["services"]
    args = services[bootstrap]["entrypoint"]
    assert args[:2] == ["kafka-xds", "bootstrap"]
    output = option(args, "--output")
    (job_volume,) = [volume for volume in services[bootstrap]["volumes"] if volume.endswith(":/bootstrap")]
    assert posixpath.dirname(output) == job_volume.split(":")[1]
    assert f"{job_volume}:ro" in services[envoy]["volumes"]  # the same volume at the same path
    assert services[envoy]["command"][:3] == ["envoy", "-c", output]
    assert services[envoy]["depends_on"][bootstrap] == {"condition": "service_completed_successfully"}
    secrets = run_bootstrap(args[1:], tmp_path / "envoy.yaml")
    assert len(secrets) == 2 and watched_directories(secrets) == {"/certs"}


def test_readme_compose_section_says_how_ads_is_secured_as_the_configs_do(compose):
    for _, _, server in SIDECARS:
        tls = _service_config(compose, server).xds.tls
        assert tls is not None and tls.client_ca_file is not None
    section = readme_section("docker-compose")
    assert "tls: null" not in section and "ADS runs in plaintext" not in section
    assert "ADS runs over mTLS" in section and "--xds-ca" in section


# --- Kubernetes ---


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


@pytest.mark.parametrize(
    ("server", "brokers"), [("kafka-xds", _zookeeper_brokers), ("kafka-xds-kraft", _kraft_nodes)]
)
def test_each_brokers_certificate_from_the_certs_job_holds_the_name_its_sidecars_verify(
    compose, certs, server, brokers
):
    config = _service_config(compose, server)
    (cluster,) = config.kafka_clusters
    tls = config.tls_for(cluster)
    assert tls is not None and tls.verify_broker_names
    for service in brokers(compose):
        properties = _properties(REPO / "config" / "compose" / f"{service}.properties")
        broker_id = int(properties.get("broker.id") or properties["node.id"])
        (leaf, *_) = x509.load_pem_x509_certificates((certs / f"{service}.pem").read_bytes())
        carried = set(
            leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName
            )
        )
        wanted = {name.value for name in tls.names_for(cluster.name, broker_id)}
        assert wanted and wanted <= carried, (service, wanted, carried)
