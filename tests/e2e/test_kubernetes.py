"""config/kubernetes/, checked where Kubernetes does not run: consistent with each other and with the
config they embed, every Secret provided, certificates mounted where they are read."""

from __future__ import annotations

import asyncio
import posixpath
import re
import shlex
from typing import Any

import pytest
import yaml

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.deployment import (
    KUBERNETES,
    option,
    option_values,
    parse_properties,
    readme_commands,
    readme_section,
    run_bootstrap,
    server_name,
    watched_directories,
    xds_tls_options,
)
from tests.support.wait import eventually
from xds.config.model import Config, parse_config
from xds.serving.access import access_policy, admit
from xds.shared.addresses import is_ip, parse_listen

CERTIFICATE_KEYS = {"tls.crt", "tls.key", "ca.crt"}  # what a cert-manager Certificate's Secret holds
COMBINED_PEM = "tls-combined.pem"  # with additionalOutputFormats CombinedPEM: key and chain, one file


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
    xds = option_values(_bootstrap_args(_bootstrap_container(manifests)), "--xds")
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
    examples = readme_commands("kafka-xds bootstrap")
    assert examples, "the README shows kafka-xds bootstrap"
    for args in examples:
        for server in option_values(args, "--xds"):
            host, port = parse_listen(server)
            if not is_ip(host):  # a name: a Service of the manifests, on one of its ports
                ports = _service_at(manifests, host)["spec"]["ports"]
                assert port in {entry["port"] for entry in ports}, server


def test_the_name_sidecars_check_is_in_kafka_xds_server_certificate(manifests):
    tls = _kafka_xds_config(manifests).xds.tls
    assert tls is not None
    certificate = _certificate_file(manifests, _kafka_xds(manifests), "kafka-xds", tls.cert_file)
    examples = [args for args in readme_commands("kafka-xds bootstrap") if "--xds-cert" in args]
    for args in [_bootstrap_args(_bootstrap_container(manifests)), *examples]:
        assert server_name(args) in certificate["spec"]["dnsNames"], args


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
    for command in readme_commands("kubectl"):
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
    properties = parse_properties(script.split("<<PROPS", 1)[1].split("\nPROPS", 1)[0])
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
    assert option(args, "--node-id") in ("$(POD_NAME)", "$POD_NAME")  # from the kubelet, or a shell
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in bootstrap["env"]
    output = option(args, "--output")
    for container in (bootstrap, envoy):
        assert "emptyDir" in _volume_at(pod, container, posixpath.dirname(output))
    assert envoy["args"][:2] == ["-c", output]
    admin = option_values(args, "--admin") or ["127.0.0.1:9901"]  # kafka-xds bootstrap's default
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
    for path in xds_tls_options(args).values():
        _certificate_file(manifests, _app(manifests), "envoy", path)
        folders.add(posixpath.dirname(path))
    args = [re.sub(r"\$\(?POD_NAME\)?", "payments-6d4b9c7f5-x2x7q", arg) for arg in args]
    secrets = run_bootstrap(args, tmp_path / "envoy.yaml")
    assert len(secrets) == 2 and watched_directories(secrets) == folders


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
    kubernetes = readme_section("Kubernetes")
    for path in KUBERNETES.glob("*.yaml"):
        assert f"`{path.name}`" in kubernetes, path.name
    xds = option(_bootstrap_args(_bootstrap_container(manifests)), "--xds")
    for fact in (xds, "Deployment", "ClusterIP", "restartPolicy: Always", "startupProbe", "Kubernetes 1.29"):
        assert fact in kubernetes, fact
    for document in manifests:  # every Secret a pod mounts, named where that pod is described
        if document["kind"] in ("Deployment", "StatefulSet"):
            for volume in _pod(document)["volumes"]:
                if "secret" in volume:
                    assert f"`{volume['secret']['secretName']}`" in kubernetes, volume


def test_the_broker_names_sidecars_verify_are_in_the_brokers_mesh_certificate(manifests):
    config = _kafka_xds_config(manifests)
    statefulset = _find(manifests, "StatefulSet", "kafka-a", "kafka")
    (container,) = _pod(statefulset)["containers"]
    script = container["command"][-1]
    properties = parse_properties(script.split("<<PROPS", 1)[1].split("\nPROPS", 1)[0])
    keystore = _certificate_file(manifests, statefulset, "kafka", properties["ssl.keystore.location"])
    for cluster in config.kafka_clusters:
        tls = config.tls_for(cluster)
        assert tls is not None and tls.verify_broker_names
        for broker_id in (1, 2, 3):
            names = tls.names_for(cluster.name, broker_id)
            assert names and all(name.kind == "dns" for name in names)
            assert {name.value for name in names} <= set(keystore["spec"]["dnsNames"])
