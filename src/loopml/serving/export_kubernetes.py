"""Kubernetes manifests for an exported model: a Deployment, a Service and a HorizontalPodAutoscaler.

The manifests are plain dicts (written with PyYAML by the caller), so every value is quoted correctly and
no template can produce invalid YAML. Names and label values are sanitised to what Kubernetes accepts;
the exact model name, version and content hash go into annotations, which take any text.
"""

from __future__ import annotations

import re
from typing import Any

from loopml._version import __version__
from loopml.core.hashing import hash_text
from loopml.registry.records import ModelVersion

__all__ = ["kubernetes_manifests", "label_value", "resource_name"]

LABEL_PREFIX = "loopml"  # a valid DNS subdomain as a label-key prefix: loopml/model, loopml/model-version
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
SERVICE_PORT = 80
# Requests are what the HPA's CPU utilisation is measured against; limits keep one pod from starving a node.
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
CPU_TARGET_PERCENT = 70
MAX_LABEL = 63
USER_ID = 10001  # the image's non-root user (the Dockerfile creates it)


def label_value(text: str) -> str:
    """`text` as a valid label value: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric.

    A value that had to be cut ends with a short hash of the whole text, so two long names stay distinct.
    """
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    if len(value) > MAX_LABEL or value != text:
        suffix = hash_text(text)[:8]
        value = f"{value[: MAX_LABEL - len(suffix) - 1].strip('-_.')}-{suffix}"
    return value.strip("-_.")


def resource_name(text: str, *, limit: int = MAX_LABEL) -> str:
    """`text` as a DNS-1035 label (lowercase alphanumerics and '-', starting with a letter), at most `limit`."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"
    if not name[0].isalpha():
        name = f"m-{name}"
    if len(name) > limit:
        suffix = hash_text(text)[:8]
        name = f"{name[: limit - len(suffix) - 1].rstrip('-')}-{suffix}"
    return name


def kubernetes_manifests(
    version: ModelVersion, serve_ref: str, *, image: str, replicas: int = 2, port: int = 8000
) -> dict[str, dict[str, Any]]:
    """`{"deployment": ..., "service": ..., "hpa": ...}` serving `serve_ref` from `image` on `port`."""
    name = resource_name(f"loopml-{version.name}")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "loopml",
        "app.kubernetes.io/version": label_value(f"v{version.version}"),
        f"{LABEL_PREFIX}/model": label_value(version.name),
        f"{LABEL_PREFIX}/model-version": label_value(f"v{version.version}"),
    }
    annotations = {
        f"{LABEL_PREFIX}/model": version.name,
        f"{LABEL_PREFIX}/serves": serve_ref,
        f"{LABEL_PREFIX}/version-id": version.version_id,
        f"{LABEL_PREFIX}/content-hash": version.content_hash,
        f"{LABEL_PREFIX}/exported-by": f"loopml {__version__}",
    }
    metadata = {"name": name, "labels": labels, "annotations": annotations}
    container = {
        "name": "model-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        # No command or args: the image's CMD (`loopml serve ...`) is the one place the server's argv is said.
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": RESOURCES,
        # Liveness only asks "is the process answering": a slow model load must not get the pod restarted.
        "livenessProbe": _probe(LIVE_PATH, port, initial_delay=10, failures=3),
        # Readiness holds traffic back until the model pool has loaded and warmed the version.
        "readinessProbe": _probe(READY_PATH, port, initial_delay=3, failures=3),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # Never below the desired count during a rollout: a new pod must be ready before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "fsGroup": USER_ID},
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": replicas,
            "maxReplicas": max(replicas * 4, replicas + 1),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
                    },
                }
            ],
        },
    }
    return {"deployment": deployment, "service": service, "hpa": hpa}


def _probe(path: str, port: int, *, initial_delay: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
