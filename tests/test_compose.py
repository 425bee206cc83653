"""docker-compose.yml and config/kubernetes/, checked where neither Docker nor Kubernetes runs:
pinned, consistent with each other and with the configs they embed, certificates where they are read."""

from __future__ import annotations

import asyncio
import posixpath
import re
import shlex
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.wait import eventually
from xds.access import access_policy, admit, identity_of
from xds.cli import main as kafka_xds
from xds.config import Config, load_config, parse_config, parse_listen
from xds.demo.certs import main as certs_job
from xds.plan import broker_port
from xds.topology import is_ip

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "config" / "kubernetes"
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
    return _parse_properties(path.read_text())


def _parse_properties(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


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


def _option_values(args: Sequence[str], option: str) -> list[str]:
    return [args[index + 1] for index, arg in enumerate(args[:-1]) if arg == option]


def _option(args: Sequence[str], option: str) -> str:
    (value,) = _option_values(args, option)
    return value


def _xds_tls_options(args: Sequence[str]) -> dict[str, str]:
    return {option: _option(args, option) for option in ("--xds-ca", "--xds-cert", "--xds-key")}


def _server_name(args: Sequence[str]) -> str:
    """The name the sidecar checks kafka-xds's certificate for: given, or the host of --xds."""
    given = _option_values(args, "--xds-server-name")
    return given[0] if given else parse_listen(_option_values(args, "--xds")[0])[0]


def _run_bootstrap(args: Sequence[str], output: Path) -> dict[str, Any]:
    """Run `kafka-xds bootstrap` with these arguments, writing to `output`; its SDS files by name."""
    args = list(args)
    args[args.index("--output") + 1] = str(output)
    assert kafka_xds(args) == 0
    return {
        path.name: yaml.safe_load(path.read_text())["resources"][0]
        for path in output.parent.glob(f"{output.stem}.*.yaml")
    }


def _watched_directories(secrets: dict[str, Any]) -> set[str]:
    return {
        (resource.get("tls_certificate") or resource["validation_context"])["watched_directory"]["path"]
        for resource in secrets.values()
    }


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


def _readme_section(title: str) -> str:
    sections = (REPO / "README.md").read_text().split("\n## ")
    (section,) = [text for text in sections if text.startswith(title)]
    return section


def _readme_commands(program: str) -> list[list[str]]:
    """Every `program` command of the README's shell examples (continuation lines joined)."""
    blocks = (REPO / "README.md").read_text().split("```sh\n")[1:]
    lines = [line for block in blocks for line in block.split("```")[0].replace("\\\n", " ").splitlines()]
    return [
        shlex.split(line, comments=True)
        for line in lines
        if line.strip().removeprefix(".venv/bin/").startswith(program)
    ]


# --- docker-compose ---


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
        planned = f"{cluster.loopback_ip}:{broker_port(cluster, broker_id)}"
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
            *_xds_tls_options(services[bootstrap]["entrypoint"]).values(),
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
        assert name in _option_values(entrypoint, "--broker")
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

    sidecar = _xds_tls_options(args)
    assert parse_listen(_option(args, "--xds"))[0] == server  # the compose service's name
    peer = _handshake(
        (local(tls.cert_file), local(tls.key_file), local(tls.client_ca_file)),
        (local(sidecar["--xds-ca"]), local(sidecar["--xds-cert"]), local(sidecar["--xds-key"])),
        _server_name(args),
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
    output = _option(args, "--output")
    (job_volume,) = [volume for volume in services[bootstrap]["volumes"] if volume.endswith(":/bootstrap")]
    assert posixpath.dirname(output) == job_volume.split(":")[1]
    assert f"{job_volume}:ro" in services[envoy]["volumes"]  # the same volume at the same path
    assert services[envoy]["command"][:3] == ["envoy", "-c", output]
    assert services[envoy]["depends_on"][bootstrap] == {"condition": "service_completed_successfully"}
    secrets = _run_bootstrap(args[1:], tmp_path / "envoy.yaml")
    assert len(secrets) == 2 and _watched_directories(secrets) == {"/certs"}


def test_readme_compose_section_says_how_ads_is_secured_as_the_configs_do(compose):
    for _, _, server in SIDECARS:
        tls = _service_config(compose, server).xds.tls
        assert tls is not None and tls.client_ca_file is not None
    section = _readme_section("docker-compose")
    assert "tls: null" not in section and "ADS runs in plaintext" not in section
    assert "ADS runs over mTLS" in section and "--xds-ca" in section


# --- Kubernetes ---


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _find(
    manifests: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None
) -> dict[str, Any]:
    found = [
        document
        for document in manifests
        if document["kind"] == kind
        and document["metadata"]["name"] == name
        and document["metadata"].get("namespace") == namespace
    ]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} in config/kubernetes"
    return found[0]


def _namespace(document: dict[str, Any]) -> str:
    namespace: str = document["metadata"]["namespace"]
    return namespace


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = (
        workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]
    )
    return pod


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = pod.get("initContainers", []) + pod["containers"]
    return containers


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = [container for container in _containers(pod) if container["name"] == name]
    return container


def _kafka_xds(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(manifests, "Deployment", "kafka-xds", "kafka-xds")


def _app(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The application's workload: the one with an Envoy sidecar."""
    (app,) = [
        document
        for document in manifests
        if document["kind"] in ("Pod", "Deployment", "StatefulSet")
        and any(container["name"] == "envoy" for container in _containers(_pod(document)))
    ]
    return app


def _kafka_xds_config(manifests: list[dict[str, Any]]) -> Config:
    config_map = _find(manifests, "ConfigMap", "kafka-xds", "kafka-xds")
    return parse_config(yaml.safe_load(config_map["data"]["config.yaml"]))


def _bootstrap_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    init: list[dict[str, Any]] = _pod(_app(manifests))["initContainers"]
    (container,) = [candidate for candidate in init if _bootstrap_args(candidate)]
    return container


def _bootstrap_args(container: dict[str, Any]) -> list[str]:
    """The `kafka-xds bootstrap` arguments a container runs with (none: it runs something else)."""
    words = [*container.get("command", []), *container.get("args", [])]
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    words = words[1:] if words[:1] == ["kafka-xds"] else words
    return words if words[:1] == ["bootstrap"] else []


def _volume_at(pod: dict[str, Any], container: dict[str, Any], folder: str) -> dict[str, Any]:
    """The volume `container` mounts at `folder`, whole: a subPath mount never sees a renewed Secret."""
    mounts = [mount for mount in container.get("volumeMounts", []) if mount["mountPath"] == folder]
    assert len(mounts) == 1, f"{container['name']}: nothing mounted at {folder}"
    assert "subPath" not in mounts[0], f"{container['name']}: {folder} is a subPath mount"
    volumes: list[dict[str, Any]] = pod["volumes"]
    (volume,) = [volume for volume in volumes if volume["name"] == mounts[0]["name"]]
    return volume


def _certificate_file(
    manifests: list[dict[str, Any]], workload: dict[str, Any], container: str, path: str
) -> dict[str, Any]:
    """The cert-manager Certificate whose Secret `container` reads `path` from (checked: it is a key
    of that Secret, mounted whole at the file's folder); returns the Certificate."""
    pod = _pod(workload)
    folder, name = posixpath.split(path)
    volume = _volume_at(pod, _container(pod, container), folder)
    assert "secret" in volume and "items" not in volume["secret"], volume
    certificate = _certificate_of(manifests, _namespace(workload), volume["secret"]["secretName"])
    assert name in _secret_keys(certificate), f"{path}: no key {name} in {volume['secret']['secretName']}"
    return certificate


def _certificate_of(manifests: list[dict[str, Any]], namespace: str, secret: str) -> dict[str, Any]:
    found = [
        document
        for document in manifests
        if document["kind"] == "Certificate"
        and _namespace(document) == namespace
        and document["spec"]["secretName"] == secret
    ]
    assert len(found) == 1, f"the Secret {namespace}/{secret}: made by {len(found)} Certificates"
    return found[0]


def _secret_keys(certificate: dict[str, Any]) -> set[str]:
    formats = {output["type"] for output in certificate["spec"].get("additionalOutputFormats", [])}
    return CERTIFICATE_KEYS | ({COMBINED_PEM} if "CombinedPEM" in formats else set())


def _service_at(manifests: list[dict[str, Any]], host: str) -> dict[str, Any]:
    """The Service a cluster DNS name (SERVICE.NAMESPACE.svc[.cluster.local]) resolves to."""
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?", host)
    assert match is not None, f"{host} is not a Service's cluster DNS name"
    return _find(manifests, "Service", match[1], match[2])


def test_kubernetes_manifests_parse_and_embed_a_valid_config(manifests):
    kinds = {document["kind"] for document in manifests}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "StatefulSet",
        "ConfigMap",
        "Certificate",
    } <= kinds
    assert _kafka_xds(manifests)["spec"]["replicas"] == 2
    assert _kafka_xds_config(manifests).kafka_clusters[0].upstream_port == 9094
    for document in manifests:
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", container["image"]), container["image"]


def test_the_app_pods_and_the_readme_examples_dial_the_kafka_xds_service_on_its_ads_port(manifests):
    """One name for every replica: a ClusterIP Service in front of the Deployment's pods."""
    xds = _option_values(_bootstrap_args(_bootstrap_container(manifests)), "--xds")
    assert len(xds) == 1
    host, port = parse_listen(xds[0])
    service = _service_at(manifests, host)
    assert service["spec"].get("clusterIP") != "None"  # a virtual IP: any ready replica
    (service_port,) = [entry for entry in service["spec"]["ports"] if entry["port"] == port]
    deployment = _kafka_xds(manifests)
    assert deployment["spec"]["replicas"] >= 2
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (container,) = _pod(deployment)["containers"]
    (target,) = [entry for entry in container["ports"] if entry["name"] == service_port["targetPort"]]
    assert target["containerPort"] == parse_listen(_kafka_xds_config(manifests).xds.listen)[1]
    examples = _readme_commands("kafka-xds bootstrap")
    assert examples, "the README shows kafka-xds bootstrap"
    for args in examples:
        for server in _option_values(args, "--xds"):
            host, port = parse_listen(server)
            if not is_ip(host):  # a name: a Service of the manifests, on one of its ports
                ports = _service_at(manifests, host)["spec"]["ports"]
                assert port in {entry["port"] for entry in ports}, server


def test_the_name_sidecars_check_is_in_kafka_xds_server_certificate(manifests):
    tls = _kafka_xds_config(manifests).xds.tls
    assert tls is not None
    certificate = _certificate_file(manifests, _kafka_xds(manifests), "kafka-xds", tls.cert_file)
    examples = [args for args in _readme_commands("kafka-xds bootstrap") if "--xds-cert" in args]
    for args in [_bootstrap_args(_bootstrap_container(manifests)), *examples]:
        assert _server_name(args) in certificate["spec"]["dnsNames"], args


def test_every_secret_the_manifests_use_is_provided_and_the_debug_token_is_created_as_documented(manifests):
    used = set()
    for document in manifests:
        if document["kind"] in ("Deployment", "StatefulSet"):
            for volume in _pod(document).get("volumes", []):
                if "secret" in volume:
                    used.add((_namespace(document), volume["secret"]["secretName"]))
        if document["kind"] == "ClusterIssuer" and "ca" in document["spec"]:
            used.add(("cert-manager", document["spec"]["ca"]["secretName"]))
    created = {}  # the README's `kubectl create secret` lines: (namespace, name) -> their keys
    for command in _readme_commands("kubectl"):
        if command[1:2] == ["-n"] and command[3:5] == ["create", "secret"]:
            keys = {
                arg.split("=", 2)[1] for arg in command if arg.startswith(("--from-literal=", "--from-file="))
            }
            created[command[2], command[6]] = keys
    provided = {(_namespace(d), d["spec"]["secretName"]) for d in manifests if d["kind"] == "Certificate"}
    assert used <= provided | set(created), used - provided - set(created)
    token_file = _kafka_xds_config(manifests).debug.token_file
    assert token_file is not None
    pod = _pod(_kafka_xds(manifests))
    folder, key = posixpath.split(token_file)
    volume = _volume_at(pod, _container(pod, "kafka-xds"), folder)
    assert created[("kafka-xds", volume["secret"]["secretName"])] == {key}


def test_the_broker_statefulset_has_its_headless_service_its_tls_secret_and_a_data_volume(manifests):
    statefulset = _find(manifests, "StatefulSet", "kafka-a", "kafka")
    service = _find(manifests, "Service", statefulset["spec"]["serviceName"], "kafka")
    assert service["spec"]["clusterIP"] == "None"
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = _pod(statefulset)["containers"]
    script = container["command"][-1]
    properties = _parse_properties(script.split("<<PROPS", 1)[1].split("\nPROPS", 1)[0])
    mesh_port = int(
        dict(item.split("://") for item in properties["listeners"].split(","))["MESH"].split(":")[1]
    )
    assert mesh_port in {entry["port"] for entry in service["spec"]["ports"]}
    assert mesh_port == _kafka_xds_config(manifests).kafka_clusters[0].upstream_port
    assert properties["ssl.keystore.type"] == properties["ssl.truststore.type"] == "PEM"
    keystore = _certificate_file(manifests, statefulset, "kafka", properties["ssl.keystore.location"])
    assert posixpath.basename(properties["ssl.keystore.location"]) == COMBINED_PEM
    assert keystore["spec"]["privateKey"]["encoding"] == "PKCS8"  # the only kind Kafka's PEM keystore reads
    assert posixpath.basename(properties["ssl.truststore.location"]) == "ca.crt"
    _certificate_file(manifests, statefulset, "kafka", properties["ssl.truststore.location"])
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (data,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert properties["log.dirs"].startswith(data["mountPath"] + "/")  # a folder in it, not its root


def test_envoy_is_a_native_sidecar_between_the_bootstrap_init_container_and_the_app(manifests):
    pod = _pod(_app(manifests))
    bootstrap = _bootstrap_container(manifests)
    names = [container["name"] for container in pod["initContainers"]]
    envoy = _container(pod, "envoy")
    assert envoy in pod["initContainers"] and envoy["restartPolicy"] == "Always"
    assert names.index(bootstrap["name"]) < names.index("envoy") and "restartPolicy" not in bootstrap
    args = _bootstrap_args(bootstrap)
    assert _option(args, "--node-id") in ("$(POD_NAME)", "$POD_NAME")  # from the kubelet, or a shell
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in bootstrap["env"]
    output = _option(args, "--output")
    for container in (bootstrap, envoy):
        assert "emptyDir" in _volume_at(pod, container, posixpath.dirname(output))
    assert envoy["args"][:2] == ["-c", output]
    admin = _option_values(args, "--admin") or ["127.0.0.1:9901"]  # kafka-xds bootstrap's default
    host, port = parse_listen(admin[0])
    probe = " ".join(envoy["startupProbe"]["exec"]["command"])
    assert f"/dev/tcp/{host}/{port}" in probe and "GET /ready " in probe


@pytest.mark.envoy
async def test_the_sidecar_startup_probe_passes_only_once_envoy_is_live(
    manifests, addresses: LoopbackAddresses, envoys, xds_processes
):
    cluster = {
        "name": "kafka-a",
        "loopback_ip": addresses.take(),
        "port_base": 9090,
        "upstream_listener": "MESH",
        "static": {"brokers": [{"id": 1, "host": addresses.take(), "port": 9094}]},
    }
    config = base_config(None, [cluster], addresses.take())
    envoy = await envoys("app-1", config)  # its admin API answers; kafka-xds is not there yet
    admin = envoy.admin_url.removeprefix("http://").replace(":", "/")
    probe = [
        part.replace("/dev/tcp/127.0.0.1/9901", f"/dev/tcp/{admin}")
        for part in _container(_pod(_app(manifests)), "envoy")["startupProbe"]["exec"]["command"]
    ]

    async def probe_passes() -> bool:
        process = await asyncio.create_subprocess_exec(*probe)
        return await asyncio.wait_for(process.wait(), 10) == 0

    assert not await probe_passes()  # initializing: /ready answers 503
    await xds_processes(config)
    await eventually(probe_passes, what="the startup probe to pass")


def test_upstream_tls_files_are_where_the_app_pods_mount_their_certificate_secret(manifests):
    upstream = _kafka_xds_config(manifests).upstream_tls
    assert upstream is not None
    for path in (upstream.ca_file, upstream.cert_file, upstream.key_file):
        certificate = _certificate_file(manifests, _app(manifests), "envoy", path)
        assert "client auth" in certificate["spec"]["usages"]


def test_the_bootstrap_certificate_files_are_mounted_from_a_certificate_secret_and_watched_there(
    manifests, tmp_path
):
    args = _bootstrap_args(_bootstrap_container(manifests))
    folders = set()
    for path in _xds_tls_options(args).values():
        _certificate_file(manifests, _app(manifests), "envoy", path)
        folders.add(posixpath.dirname(path))
    args = [re.sub(r"\$\(?POD_NAME\)?", "payments-6d4b9c7f5-x2x7q", arg) for arg in args]
    secrets = _run_bootstrap(args, tmp_path / "envoy.yaml")
    assert len(secrets) == 2 and _watched_directories(secrets) == folders


def test_kafka_xds_reads_its_server_certificate_from_its_certificate_secret(manifests):
    tls = _kafka_xds_config(manifests).xds.tls
    assert tls is not None and tls.client_ca_file is not None
    for path in (tls.cert_file, tls.key_file, tls.client_ca_file):
        certificate = _certificate_file(manifests, _kafka_xds(manifests), "kafka-xds", path)
        assert "server auth" in certificate["spec"]["usages"]


def test_every_certificate_is_issued_by_the_one_mesh_ca_and_the_app_identity_may_see_kafka_a(manifests):
    certificates = [document for document in manifests if document["kind"] == "Certificate"]
    leaves = [certificate for certificate in certificates if not certificate["spec"].get("isCA")]
    issuers = {(c["spec"]["issuerRef"]["kind"], c["spec"]["issuerRef"]["name"]) for c in leaves}
    assert len(issuers) == 1  # every side trusts the others through the ca.crt in its own Secret
    ((kind, name),) = issuers
    issuer = _find(manifests, kind, name)
    ca = _certificate_of(manifests, "cert-manager", issuer["spec"]["ca"]["secretName"])
    assert ca["spec"]["isCA"] is True
    pod = _pod(_app(manifests))
    (volume,) = [volume for volume in pod["volumes"] if "secret" in volume]
    app = _certificate_of(manifests, _namespace(_app(manifests)), volume["secret"]["secretName"])
    identity = (app["spec"].get("uris") or app["spec"]["dnsNames"])[0]  # as kafka-xds takes it
    assert admit(identity, access_policy(_kafka_xds_config(manifests).access)) == frozenset({"kafka-a"})


def test_readme_kubernetes_section_describes_the_manifests_as_they_are(manifests):
    kubernetes = _readme_section("Kubernetes")
    for path in KUBERNETES.glob("*.yaml"):
        assert f"`{path.name}`" in kubernetes, path.name
    xds = _option(_bootstrap_args(_bootstrap_container(manifests)), "--xds")
    for fact in (xds, "Deployment", "ClusterIP", "restartPolicy: Always", "startupProbe", "Kubernetes 1.29"):
        assert fact in kubernetes, fact
    for document in manifests:  # every Secret a pod mounts, named where that pod is described
        if document["kind"] in ("Deployment", "StatefulSet"):
            for volume in _pod(document)["volumes"]:
                if "secret" in volume:
                    assert f"`{volume['secret']['secretName']}`" in kubernetes, volume


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
