"""Deployment files, validated offline: Kubernetes schemas, Dockerfile lint, and agreement with the app."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from preprocess_service.settings import Settings
from testing.server import running_service
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.32.0"  # the oldest Kubernetes release the manifests promise to work on
CUSTOM_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "InferenceService": "serving.kserve.io/v1beta1"}
SERVICE_PORT = 8080
PEM_PRIVATE_KEY = "PRIVATE" + " KEY-----"  # split, or this very file would match


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is installed by `make test` (Debian package kubernetes-client)"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module", params=["cpu", "gpu", "gpu-tensorrt"])
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects: list[dict], deployment: str) -> dict:
    return find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def validate(document: dict) -> None:
    if document["kind"] in CUSTOM_KINDS:  # CRDs: no schema in kubernetes-validate; check the frame
        assert document["apiVersion"] == CUSTOM_KINDS[document["kind"]]
        assert document["metadata"]["name"] and document["spec"]
        return
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_every_rendered_object_is_valid(overlay):
    name, objects = overlay
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("Deployment") == 2 and kinds.count("HorizontalPodAutoscaler") == 2
    assert {"Namespace", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= set(kinds)
    for document in objects:
        validate(document)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "deepfake"


def test_other_manifests_are_valid():
    for path in [DEPLOY / "k8s" / "perf" / "job.yaml", DEPLOY / "k8s" / "kserve" / "inference-service.yaml"]:
        for document in yaml.safe_load_all(path.read_text()):
            validate(document)


def test_gpu_and_cpu_overlays_differ_where_they_must(overlay):
    name, objects = overlay
    triton = container(objects, "triton")
    resources = triton["resources"]
    if name.startswith("gpu"):
        assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
        config_names = [arg for arg in triton["args"] if arg.startswith("--model-config-name")]
        assert config_names == ([] if name == "gpu" else ["--model-config-name=gpu-tensorrt"])
    else:
        assert "nvidia.com/gpu" not in str(resources)
        assert "--model-config-name=cpu" in triton["args"]  # KIND_GPU instance groups fail on CPU hosts


def test_probes_and_ports_match_the_apps_routes(overlay, tmp_path, demo_repository):
    _, objects = overlay
    api = container(objects, "deepfake-api")
    ports = {port["name"]: port["containerPort"] for port in api["ports"]}
    assert ports == {"http": SERVICE_PORT} and api["args"][-2:] == ["--port", str(SERVICE_PORT)]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    with running_service(Settings(model_repository=demo_repository, keys_dir=tmp_path)) as url:
        for path in ("/readyz", "/healthz", "/metrics"):  # what the probes and the ServiceMonitor call
            assert httpx.get(url + path).status_code == 200, path
    triton = container(objects, "triton")
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    dockerfile = (DEPLOY / "docker" / "service.Dockerfile").read_text()
    assert f"EXPOSE {SERVICE_PORT}" in dockerfile and f"127.0.0.1:{SERVICE_PORT}/healthz" in dockerfile


def test_the_service_runs_locked_down(overlay):
    _, objects = overlay
    pod = find(objects, "Deployment", "deepfake-api")["spec"]["template"]["spec"]
    api = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in api["volumeMounts"]}
    assert mounts["/var/run/secrets/deepfake"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert volumes["signing-key"]["secret"]["secretName"] == "deepfake-signing-key"


SECRET_SETTINGS = {  # credentials inside URLs: from Secrets, never a ConfigMap or a literal in the manifests
    "DEEPFAKE_API_KEYS": ("deepfake-api-keys", "api_keys"),
    "DEEPFAKE_DATABASE_URL": ("deepfake-database", "url"),
    "DEEPFAKE_RATE_LIMIT_STORAGE": ("deepfake-rate-limits", "url"),
}


def test_credentials_come_from_secrets_and_shared_state_is_shared(overlay):
    """Every replica must share the history and the rate-limit counters (else N pods allow N x the limit),
    so both URLs are set in every overlay, and from Secrets: they carry passwords."""
    _, objects = overlay
    env = {e["name"]: e for e in container(objects, "deepfake-api")["env"]}
    settings = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    for name, (secret, key) in SECRET_SETTINGS.items():
        assert "value" not in env[name] and name not in settings, name
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": key}}, name
    assert settings["DEEPFAKE_TRUSTED_PROXIES"] == ""  # none believed until the ingress's addresses are set


def _settings_fields() -> set[str]:
    return {f"DEEPFAKE_{name.upper()}" for name in Settings.model_fields}


def test_every_deepfake_setting_in_the_deployment_files_exists(overlay):
    _, objects = overlay
    used = set(find(objects, "ConfigMap", "deepfake-api-settings")["data"])
    used |= {e["name"] for e in container(objects, "deepfake-api").get("env", [])}
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    used |= set(compose["services"]["api"]["environment"])
    used |= set(re.findall(r"\b(DEEPFAKE_[A-Z_]+)=", (DEPLOY / "docker" / "service.Dockerfile").read_text()))
    used = {name for name in used if name.startswith("DEEPFAKE_")}
    assert len(used) >= 10 and used <= _settings_fields(), used - _settings_fields()
    data = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    assert data["DEEPFAKE_TRITON_GRPC_URL"] == "dns:///triton-headless:8001"  # every Triton pod, round robin


def test_grpc_reaches_every_triton_pod_and_a_job_migrates_once(overlay):
    """The front's gRPC name is a headless Service over Triton's pods (one connection per pod, not one
    pod per front); the schema is upgraded by one Job with the database Secret, not by every pod."""
    _, objects = overlay
    headless = find(objects, "Service", "triton-headless")["spec"]
    assert headless["clusterIP"] == "None"
    pod_labels = find(objects, "Deployment", "triton")["spec"]["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= pod_labels.items()
    assert [port["port"] for port in headless["ports"]] == [8001]
    settings = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    assert settings["DEEPFAKE_MIGRATE_ON_START"] == "false" and settings["DEEPFAKE_TRITON_GRPC_LB"] == "round_robin"
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    release = next(image["newTag"] for image in kustomization["images"] if image["name"] == "deepfake-service")
    job = find(objects, "Job", f"deepfake-migrate-{release}")["spec"]["template"]["spec"]  # a Job per release
    migrate = job["containers"][0]
    assert migrate["args"] == ["deepfake-serve", "--migrate"] and job["restartPolicy"] == "OnFailure"
    env = {e["name"]: e for e in migrate["env"]}
    assert env["DEEPFAKE_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "deepfake-database", "key": "url"}}
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True


def test_traces_go_to_the_collector_the_config_maps_name(overlay):
    """The front exports OTLP to the endpoint in its ConfigMap; Triton's --trace-config flags take the
    collector from theirs (Kubernetes expands $(VAR) in args from the container's env)."""
    _, objects = overlay
    settings = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    assert settings["DEEPFAKE_OTLP_ENDPOINT"].startswith("http://") and settings["DEEPFAKE_OTLP_ENDPOINT"].endswith(
        "/v1/traces"
    )
    triton = container(objects, "triton")
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in triton["env"] if "valueFrom" in e}
    tracing = find(objects, "ConfigMap", "triton-tracing")["data"]
    for variable in ("OTLP_TRACES_URL", "TRACE_RATE"):
        assert f"$({variable})" in " ".join(triton["args"]) and env[variable]["name"] == "triton-tracing"
        assert env[variable]["key"] in tracing
    assert "--trace-config=mode=opentelemetry" in triton["args"]


def test_services_and_network_policy_select_the_right_pods(overlay):
    _, objects = overlay
    pod_labels = {
        name: find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("triton", "deepfake-api")
    }
    for service, deployment in (("triton", "triton"), ("deepfake-api", "deepfake-api")):
        selector = find(objects, "Service", service)["spec"]["selector"]
        assert selector.items() <= pod_labels[deployment].items()
    policy = find(objects, "NetworkPolicy", "triton-ingress")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels["triton"].items()
    allowed = [peer["podSelector"]["matchLabels"] for peer in policy["ingress"][0]["from"]]
    assert any(labels.items() <= pod_labels["deepfake-api"].items() for labels in allowed)
    assert sorted(p["port"] for p in policy["ingress"][0]["ports"]) == [8000, 8001]


def test_perf_job_uses_the_benchmark_parameters():
    job = (DEPLOY / "k8s" / "perf" / "job.yaml").read_text()
    script = (ROOT / "benchmarks" / "triton_perf.sh").read_text()
    for fragment in ("faces:", "features:30,2048", "-b 1", "--shape"):
        assert fragment in job and fragment in script
    assert "--shape faces:180,180,3" in job and 'CONCURRENCY:-"1 2 4 8"' in script and "--concurrency-range 1:8" in job


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, *(str(p) for p in sorted((DEPLOY / "docker").glob("*.Dockerfile")))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_private_key_is_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert len(tracked) > 20
    offenders = [
        name
        for name in tracked
        if (ROOT / name).is_file() and PEM_PRIVATE_KEY in (ROOT / name).read_text(errors="ignore")
    ]
    assert offenders == []
