"""Every document of config/kubernetes/ against Kubernetes' own API schemas (kubernetes-validate ships
them, offline), in strict mode: a misspelt, misplaced or mistyped field, which an apply would refuse
or silently drop, fails here.

Custom resources (cert-manager's Certificate, ClusterIssuer, Issuer) have no schema there: theirs
come with the CRDs. They are skipped by name, and any other kind without a schema fails."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.support.deployment import KUBERNETES

# The oldest Kubernetes the README names for these manifests (native sidecars: 1.29) and a recent
# release, both pinned: a newer kubernetes-validate must not change what is checked.
KUBERNETES_VERSIONS = ("1.29", "1.37")
CUSTOM_RESOURCES = frozenset(
    {
        ("cert-manager.io/v1", "Certificate"),
        ("cert-manager.io/v1", "ClusterIssuer"),
        ("cert-manager.io/v1", "Issuer"),
    }
)


def _files() -> list[Path]:
    return sorted([*KUBERNETES.glob("*.yaml"), *KUBERNETES.glob("*.yml")])


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{index}:{document['kind']}/{document['metadata']['name']}", document)
        for path in _files()
        for index, document in enumerate(yaml.safe_load_all(path.read_text()))
        if document
    ]


DOCUMENTS = _documents()


def _validate(document: dict[str, Any], version: str) -> None:
    checked = kubernetes_validate.validate(document, version, strict=True)
    assert checked == version, f"validated against {checked}'s schema, not {version}'s"


def test_every_file_in_config_kubernetes_has_documents():
    assert _files() and {name.split("#")[0] for name, _ in DOCUMENTS} == {path.name for path in _files()}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("document", [document for _, document in DOCUMENTS], ids=[n for n, _ in DOCUMENTS])
def test_the_document_is_valid_for_kubernetes_in_strict_mode(document, version):
    if (document["apiVersion"], document["kind"]) in CUSTOM_RESOURCES:
        pytest.skip(f"{document['kind']} is a cert-manager custom resource: no Kubernetes schema")
    try:
        _validate(document, version)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"Kubernetes {version}: {path}: {error.message}")


def _statefulset() -> dict[str, Any]:
    (statefulset,) = [document for _, document in DOCUMENTS if document["kind"] == "StatefulSet"]
    return copy.deepcopy(statefulset)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda pod: pod.__setitem__("toleration", pod.pop("tolerations")), id="misspelt"),
        pytest.param(lambda pod: pod["containers"][0].__setitem__("readinesProbe", {}), id="unknown"),
        pytest.param(
            lambda pod: pod["topologySpreadConstraints"][0].__setitem__("maxSkew", "1"), id="mistyped"
        ),
        pytest.param(
            lambda pod: pod["containers"][0].__setitem__("tolerations", pod.pop("tolerations")),
            id="misplaced",
        ),
    ],
)
def test_the_schema_check_refuses_a_broken_statefulset(breakage):
    """The check above would pass anything if strict mode or the schema lookup did not work."""
    statefulset = _statefulset()
    _validate(statefulset, KUBERNETES_VERSIONS[-1])
    breakage(statefulset["spec"]["template"]["spec"])
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(statefulset, KUBERNETES_VERSIONS[-1])


def test_a_kind_without_a_schema_is_not_silently_passed():
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        _validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, "1.37")
