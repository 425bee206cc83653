"""config/kubernetes/, checked where Kubernetes does not run: consistent with each other and with the
config they embed, every Secret provided, certificates mounted where they are read."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import posixpath
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.conftest import base_config
from tests.support.addresses import LoopbackAddresses
from tests.support.deployment import (
    KUBERNETES,
    REPO,
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
from xds.cli import _parser
from xds.config.model import Config, parse_config
from xds.health.override import ENV_VAR, override_from_text
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


# --- the broker StatefulSet: rolls gated on in-sync replicas, placement, broker.rack ---

BROKERS_FILE = KUBERNETES / "kafka-broker-statefulset.yaml"
ZONE_LABEL = "topology.kubernetes.io/zone"
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"  # where a pod's API token is read


def _brokers(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(manifests, "StatefulSet", "kafka-a", "kafka")


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector  # matchExpressions are not evaluated here
    return bool(selector["matchLabels"].items() <= labels.items())


def _readiness_gate(pod: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The one container with a readiness probe, and the command it runs: `kafka-xds broker-ready`."""
    (container,) = [container for container in _containers(pod) if "readinessProbe" in container]
    command: list[str] = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["kafka-xds", "broker-ready"], command
    return container, command


def _broker_script(statefulset: dict[str, Any]) -> str:
    (container,) = _pod(statefulset)["containers"]
    script: str = container["command"][-1]
    return script


def _broker_properties(statefulset: dict[str, Any]) -> dict[str, str]:
    return parse_properties(_broker_script(statefulset).split("<<PROPS", 1)[1].split("\nPROPS", 1)[0])


def _zone_file(statefulset: dict[str, Any]) -> str:
    (path,) = re.findall(r'^\s*ZONE="\$\(cat (\S+)\)"$', _broker_script(statefulset), re.MULTILINE)
    return str(path)


def _rack_container(pod: dict[str, Any], zone_file: str) -> dict[str, Any]:
    """The init container whose Python script writes the zone file."""
    init: list[dict[str, Any]] = pod.get("initContainers", [])
    (container,) = [c for c in init if f'open("{zone_file}", "w")' in c.get("command", [""])[-1]]
    return container


def _rolling_brokers_docs() -> str:
    sections = (REPO / "docs" / "operations.md").read_text().split("\n## ")
    (section,) = [text for text in sections if text.startswith("Rolling brokers\n")]
    return section


def _kubectl_commands(text: str) -> list[list[str]]:
    """Every kubectl command in a text: shell lines, or comment lines of a manifest."""
    lines = (line.strip().lstrip("#").strip() for line in text.splitlines())
    return [shlex.split(line, comments=True) for line in lines if line.startswith("kubectl ")]


def test_the_brokers_readiness_is_kafka_xds_broker_ready_for_the_pods_own_broker_id(manifests):
    statefulset = _brokers(manifests)
    pod = _pod(statefulset)
    container, command = _readiness_gate(pod)
    # The pod's hostname is its name, kafka-a-N; the start-up script's broker id is N + offset.
    assert "--broker-id-from-hostname" in command and "--broker-id" not in command
    script = _broker_script(statefulset)
    assert 'ordinal="${POD_NAME##*-}"' in script
    (offset,) = re.findall(r"^\s*id=\$\(\(ordinal \+ (\d+)\)\)$", script, re.MULTILINE)
    assert option(command, "--broker-id-offset") == offset
    properties = _broker_properties(statefulset)
    listeners = {name: parse_listen(address)[1] for name, address in _pairs(properties["listeners"], "://")}
    protocols = dict(_pairs(properties["listener.security.protocol.map"], ":"))
    servers = option_values(command, "--bootstrap-server")
    assert servers
    headless = f"{statefulset['spec']['serviceName']}.{_namespace(statefulset)}.svc"
    for server in servers:  # this pod's broker, or every broker through the headless Service
        host, port = parse_listen(server)
        assert host in ("localhost", headless), server
        (listener,) = [name for name, listening in listeners.items() if listening == port]
        assert protocols[listener] == "PLAINTEXT", "give broker-ready the listener's TLS/SASL settings"
    # The image that has kafka-xds, as a native sidecar: its readiness counts for the pod's.
    assert container["image"] == _container(_pod(_kafka_xds(manifests)), "kafka-xds")["image"]
    assert container in pod["initContainers"] and container["restartPolicy"] == "Always"


def _pairs(text: str, separator: str) -> list[tuple[str, str]]:
    return [(name, value) for name, value in (item.split(separator, 1) for item in text.split(","))]


def test_the_readiness_probe_outlasts_the_commands_own_timeout(manifests):
    container, command = _readiness_gate(_pod(_brokers(manifests)))
    probe = container["readinessProbe"]
    timeout = float(option(command, "--timeout"))
    assert probe["timeoutSeconds"] >= timeout + 3  # room for the interpreter's start on a busy node
    assert 5 <= probe["periodSeconds"] <= 30 and probe["periodSeconds"] >= probe["timeoutSeconds"]
    assert probe.get("successThreshold", 1) >= 1 and probe.get("failureThreshold", 3) >= 1


def test_the_readiness_probe_is_a_command_kafka_xds_takes(manifests):
    _, command = _readiness_gate(_pod(_brokers(manifests)))
    parser = _parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if "broker-ready" not in commands.choices:
        pytest.skip("kafka-xds broker-ready is not in this tree yet")
    assert parser.parse_args(command[1:]).command == "broker-ready"


def test_the_override_file_is_the_pods_own_and_documented_as_broker_ready_reads_it(manifests):
    statefulset = _brokers(manifests)
    pod = _pod(statefulset)
    container, command = _readiness_gate(pod)
    path = option(command, "--override-file")
    folder = posixpath.dirname(path)
    assert "emptyDir" in _volume_at(pod, container, folder)  # per pod: gone when the pod is replaced
    (mount,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == folder]
    assert not mount.get("readOnly")  # kubectl exec writes it there
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for text in (BROKERS_FILE.read_text(), _rolling_brokers_docs()):
        assert ENV_VAR in text
        written = set()
        for args in [args for args in _kubectl_commands(text) if "exec" in args]:
            assert args[1:3] == ["-n", _namespace(statefulset)], args
            kubectl, inner = args[: args.index("--")], args[args.index("--") + 1 :]
            assert re.fullmatch(rf"{statefulset['metadata']['name']}-\d+", kubectl[kubectl.index("exec") + 1])
            assert option(kubectl, "-c") == container["name"], args
            if inner[0] in ("touch", "rm"):
                assert inner[1:] == [path], args
                written.add(inner[0])
                continue
            assert inner[:2] == ["sh", "-c"], args
            words = shlex.split(inner[2])
            assert words[0] in ("echo", "printf") and words[-2:] == [">", path], args
            override = override_from_text(path, words[1].replace("\\n", "\n"), now, now)
            assert override.active and override.error is None and override.expires_at is not None, args
            written.add("expiry")
        assert {"touch", "expiry"} <= written, written


def test_the_broker_containers_own_probes_ask_only_whether_its_process_serves(manifests):
    """Liveness on the ISR would restart every broker when one fails, and kill one still catching up."""
    statefulset = _brokers(manifests)
    pod = _pod(statefulset)
    (broker,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in broker["ports"]}
    listening = {
        parse_listen(address)[1] for _, address in _pairs(_broker_properties(statefulset)["listeners"], "://")
    }
    for kind in ("startupProbe", "livenessProbe"):
        probe = broker[kind]
        assert set(probe) & {"exec", "httpGet", "grpc", "tcpSocket"} == {"tcpSocket"}, kind
        port = probe["tcpSocket"]["port"]
        assert ports.get(port, port) in listening, kind
    startup = broker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60  # log recovery after a crash
    assert "readinessProbe" not in broker  # the pod's readiness is the gate's
    for container in _containers(pod):
        for kind in ("startupProbe", "livenessProbe"):
            assert "broker-ready" not in json.dumps(container.get(kind, {})), (container["name"], kind)


def test_the_statefulset_rolls_one_pod_at_a_time_and_a_budget_allows_one_disruption(manifests):
    statefulset = _brokers(manifests)
    spec = statefulset["spec"]
    labels = _pod_labels(statefulset)
    assert _selects(spec["selector"], labels)
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    rolling = spec["updateStrategy"].get("rollingUpdate", {})
    assert rolling.get("partition", 0) == 0 and "maxUnavailable" not in rolling  # all, one at a time
    assert spec["podManagementPolicy"] == "Parallel"  # OrderedReady deadlocks an ISR-gated cold start
    namespace = _namespace(statefulset)
    (budget,) = [
        document
        for document in manifests
        if document["kind"] == "PodDisruptionBudget"
        and _namespace(document) == namespace
        and _selects(document["spec"]["selector"], labels)
    ]
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"] == spec["selector"]
    assert budget["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget") == "IfHealthyBudget"
    others = [
        document
        for document in manifests
        if document is not statefulset
        and document["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
        and _namespace(document) == namespace
    ]
    assert not [other for other in others if _selects(budget["spec"]["selector"], _pod_labels(other))]


def test_the_brokers_spread_evenly_over_zones_with_at_most_one_per_node(manifests):
    statefulset = _brokers(manifests)
    pod = _pod(statefulset)
    labels = _pod_labels(statefulset)
    (zones,) = [c for c in pod["topologySpreadConstraints"] if c["topologyKey"] == ZONE_LABEL]
    assert zones["maxSkew"] == 1 and zones["whenUnsatisfiable"] == "DoNotSchedule"
    assert zones["labelSelector"] == statefulset["spec"]["selector"]  # this cluster's brokers
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (node,) = [term for term in anti if term["topologyKey"] == "kubernetes.io/hostname"]
    assert _selects(node["labelSelector"], labels)
    assert "namespaces" not in node and "namespaceSelector" not in node  # the brokers' namespace


def test_the_brokers_tolerate_the_dedicated_pools_taint_and_require_its_node_label(manifests):
    pod = _pod(_brokers(manifests))
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert all(toleration.get("key") for toleration in pod["tolerations"])  # no tolerate-everything
    for text in (BROKERS_FILE.read_text(), _rolling_brokers_docs()):
        commands = _kubectl_commands(text)
        (taint,) = {args[4] for args in commands if args[1:4] == ["taint", "nodes", "NODE"]}
        (label,) = {args[4] for args in commands if args[1:4] == ["label", "nodes", "NODE"]}
        key_value, effect = taint.rsplit(":", 1)
        key, value = key_value.split("=")
        assert {"key": key, "operator": "Equal", "value": value, "effect": effect} in pod["tolerations"]
        key, value = label.split("=")
        required = {"key": key, "operator": "In", "values": [value]}
        assert terms["nodeSelectorTerms"]  # terms are ORed: each must require the pool's label
        assert all(required in term["matchExpressions"] for term in terms["nodeSelectorTerms"])


def test_broker_rack_is_the_zone_of_the_pods_node_read_with_the_rbac_it_needs(manifests):
    statefulset = _brokers(manifests)
    pod = _pod(statefulset)
    namespace = _namespace(statefulset)
    assert _broker_properties(statefulset)["broker.rack"] == "${ZONE}"
    assert _broker_script(statefulset).startswith("set -eu\n")  # no zone file: no broker, not an empty rack
    zone_file = _zone_file(statefulset)
    (broker,) = pod["containers"]
    rack = _rack_container(pod, zone_file)
    assert "restartPolicy" not in rack  # runs to completion before the broker starts
    volume = _volume_at(pod, rack, posixpath.dirname(zone_file))
    assert "emptyDir" in volume and _volume_at(pod, broker, posixpath.dirname(zone_file)) == volume
    assert ZONE_LABEL in rack["command"][-1]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in rack["env"]
    # Only the rack container holds an API token.
    assert pod["automountServiceAccountToken"] is False
    token = _volume_at(pod, rack, SERVICE_ACCOUNT)
    assert any("serviceAccountToken" in source for source in token["projected"]["sources"])
    for container in _containers(pod):
        mounted = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert container is rack or SERVICE_ACCOUNT not in mounted, container["name"]
    # The pod's ServiceAccount may get nodes (cluster-scoped: a ClusterRole).
    account = pod["serviceAccountName"]
    _find(manifests, "ServiceAccount", account, namespace)
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    roles = [
        _find(manifests, "ClusterRole", binding["roleRef"]["name"])
        for binding in manifests
        if binding["kind"] == "ClusterRoleBinding"
        and subject in binding["subjects"]
        and binding["roleRef"]["kind"] == "ClusterRole"
    ]
    assert any(
        "" in rule["apiGroups"] and "nodes" in rule["resources"] and "get" in rule["verbs"]
        for role in roles
        for rule in role["rules"]
    )


class _FakeNodes(BaseHTTPRequestHandler):
    """GET /api/v1/nodes/NAME as the API server answers it, for the bearer token `t0ken`."""

    nodes: dict[str, dict[str, Any]] = {
        "node-a": {"metadata": {"name": "node-a", "labels": {ZONE_LABEL: "eu-west-1b"}}},
        "node-b": {"metadata": {"name": "node-b", "labels": {"dedicated": "kafka"}}},
    }

    def do_GET(self) -> None:
        name = self.path.removeprefix("/api/v1/nodes/")
        if self.headers.get("Authorization") != "Bearer t0ken":
            status, body = 403, {"kind": "Status", "reason": "Forbidden"}
        elif name in self.nodes:
            status, body = 200, self.nodes[name]
        else:
            status, body = 404, {"kind": "Status", "reason": "NotFound"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_rack_init_container_writes_its_nodes_zone_and_stops_without_one(manifests, tmp_path):
    statefulset = _brokers(manifests)
    zone_file = _zone_file(statefulset)
    script = _rack_container(_pod(statefulset), zone_file)["command"][-1]
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeNodes)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        account = tmp_path / "account"
        account.mkdir()
        (account / "token").write_text("t0ken\n")
        ca.cert_pem.write_to_path(str(account / "ca.crt"))
        output = tmp_path / "rack"
        output.mkdir()
        local = (
            script.replace("https://kubernetes.default.svc", f"https://127.0.0.1:{server.server_port}")
            .replace(SERVICE_ACCOUNT, str(account))
            .replace(posixpath.dirname(zone_file), str(output))
        )
        assert "kubernetes.default.svc" not in local and SERVICE_ACCOUNT not in local

        def rack(node: str) -> subprocess.CompletedProcess[str]:
            environment = {**os.environ, "NODE_NAME": node}
            return subprocess.run(
                [sys.executable, "-c", local], env=environment, capture_output=True, text=True, timeout=30
            )

        done = rack("node-a")
        assert done.returncode == 0, done.stderr
        written = output / posixpath.basename(zone_file)
        assert written.read_text() == "eu-west-1b"
        written.unlink()
        unlabelled = rack("node-b")
        assert unlabelled.returncode != 0 and ZONE_LABEL in unlabelled.stderr and not written.exists()
        (account / "token").write_text("not-bound")
        forbidden = rack("node-a")
        assert forbidden.returncode != 0 and "403" in forbidden.stderr and not written.exists()
    finally:
        server.shutdown()
        server.server_close()


def test_the_readiness_sidecar_waits_until_sigterm_then_exits_at_once(manifests):
    """PID 1 ignores a signal it has no handler for: without the trap the pod's termination would wait
    out its grace period for this container."""
    container, _ = _readiness_gate(_pod(_brokers(manifests)))
    process = subprocess.Popen(container["command"], start_new_session=True)
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        deadline = time.monotonic() + 10
        while not children.read_text().strip():  # the trap is set once it waits on its child
            assert time.monotonic() < deadline, "the sidecar's command started no child"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its sleep, orphaned
        process.wait()
