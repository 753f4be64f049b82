"""Deployment files, validated offline: Kubernetes schemas, Dockerfile lint, and agreement with the app."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from preprocess_service.settings import Settings
from testing.server import running_service
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.32.0"  # the oldest Kubernetes release the manifests promise to work on
CUSTOM_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "InferenceService": "serving.kserve.io/v1beta1",
    "ServingRuntime": "serving.kserve.io/v1alpha1",
}
# KEDA's kinds, validated against the openAPIV3Schema of KEDA's own CRDs (vendored in tests/schemas, each
# file says from where): kubernetes-validate knows only Kubernetes' built-in kinds.
KEDA_SCHEMAS = {
    "ScaledObject": ("keda.sh/v1alpha1", "keda-2.16.1-scaledobject.yaml"),
    "TriggerAuthentication": ("keda.sh/v1alpha1", "keda-2.16.1-triggerauthentication.yaml"),
}
SCHEMAS = Path(__file__).parent / "schemas"
SERVICE_PORT = 8080
WORKER_PORT = 8081  # the worker's /metrics and /healthz
# Huey's Redis key for the queue named "deepfakejobs" (RedisStorage keeps queued jobs in the list
# "huey.redis.<name>"): what KEDA counts to scale the workers.
JOBS_QUEUE_KEY = "huey.redis.deepfakejobs"
PEM_PRIVATE_KEY = "PRIVATE" + " KEY-----"  # split, or this very file would match


def kustomize(path: Path) -> str:
    """The YAML ``kubectl kustomize`` renders from a kustomization directory."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is installed by `make test` (Debian package kubernetes-client)"
    return subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def render_dir(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(kustomize(path)) if doc]


def render(overlay: str) -> list[dict]:
    return render_dir(DEPLOY / "k8s" / "overlays" / overlay)


@pytest.fixture(scope="module", params=["cpu", "gpu", "gpu-tensorrt"])
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects: list[dict], deployment: str) -> dict:
    return find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


WORKLOADS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}


def settings_of(objects: list[dict]) -> dict:
    return find(objects, "ConfigMap", "deepfake-api-settings")["data"]


def pod_specs(objects: list[dict]) -> list[dict]:
    """The pod spec of every workload (Deployments, Jobs) among the objects."""
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] in WORKLOADS]


def containers_of(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def closed(schema: dict) -> dict:
    """The schema with every object that lists its properties closed to others: the API server prunes an
    unknown field of a custom resource, and `kubectl apply` (strict field validation) refuses it, so a
    misspelt field is an error here too, as kubernetes-validate's strict mode makes it for built-in kinds."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: closed(each) for name, each in schema["properties"].items()}
        schema.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = closed(schema[key])
    if "anyOf" in schema:
        schema["anyOf"] = [closed(each) for each in schema["anyOf"]]
    return schema


def keda_validator(kind: str) -> jsonschema.Draft4Validator:
    """OpenAPI v3 schemas are JSON Schema draft 4 with extensions (x-kubernetes-*), which the validator ignores."""
    return jsonschema.Draft4Validator(closed(yaml.safe_load((SCHEMAS / KEDA_SCHEMAS[kind][1]).read_text())))


def validate(document: dict) -> None:
    if document["kind"] in KEDA_SCHEMAS:
        assert document["apiVersion"] == KEDA_SCHEMAS[document["kind"]][0]
        assert document["metadata"]["name"]
        keda_validator(document["kind"]).validate(document)
        return
    if document["kind"] in CUSTOM_KINDS:  # CRDs: no schema in kubernetes-validate; check the frame
        assert document["apiVersion"] == CUSTOM_KINDS[document["kind"]]
        assert document["metadata"]["name"] and document["spec"]
        return
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_every_rendered_object_is_valid(overlay):
    name, objects = overlay
    kinds = sorted(o["kind"] for o in objects)
    # the front, Triton and the job workers; HPAs for the first two, KEDA's ScaledObject for the workers
    assert kinds.count("Deployment") == 3 and kinds.count("HorizontalPodAutoscaler") == 2
    assert kinds.count("ScaledObject") == 1 and kinds.count("TriggerAuthentication") == 1
    assert {"Namespace", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= set(kinds)
    assert "PodMonitor" in kinds
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
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
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


SECRET_SETTINGS = {  # credentials inside URLs: from Secrets, as files, never a ConfigMap, an env var or a literal
    "DEEPFAKE_API_KEYS": ("deepfake-api-keys", "api_keys"),
    "DEEPFAKE_DATABASE_URL": ("deepfake-database", "url"),
    "DEEPFAKE_RATE_LIMIT_STORAGE": ("deepfake-rate-limits", "url"),
    "DEEPFAKE_JOBS_BROKER_URL": ("deepfake-jobs-broker", "url"),
}
SECRETS_READ_BY = {  # which of them each workload's settings read: a worker serves no API, so no keys or limits
    "deepfake-api": set(SECRET_SETTINGS),
    "deepfake-worker": {"DEEPFAKE_DATABASE_URL", "DEEPFAKE_JOBS_BROKER_URL"},
}


def projected_secrets(objects: list[dict], deployment: str) -> dict[tuple[str, str], str]:
    """(Secret, key) -> file name in the DEEPFAKE_SECRETS_DIR volume of a Deployment's first container."""
    pod = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    mount = next(
        m
        for m in pod["containers"][0]["volumeMounts"]
        if m["mountPath"] == settings_of(objects)["DEEPFAKE_SECRETS_DIR"]
    )
    assert mount["readOnly"] is True, deployment
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    return {
        (source["secret"]["name"], item["key"]): item["path"]
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def documented_secrets() -> dict[str, set[str]]:
    """Secret -> the keys the manifests' comments say to create (`kubectl ... create secret generic NAME
    --from-literal=KEY=...`, continued over comment lines ending in a backslash)."""
    comments = "\n".join(
        line.strip().removeprefix("#")
        for path in sorted((DEPLOY / "k8s" / "base").glob("*.yaml"))
        for line in path.read_text().splitlines()
        if line.strip().startswith("#")
    )
    commands = re.sub(r"\\\n", " ", comments)
    found: dict[str, set[str]] = {}
    for name, flags in re.findall(r"create secret generic (\S+)((?: +--from-(?:literal|file)=[^= ]+=\S+)+)", commands):
        found.setdefault(name, set()).update(re.findall(r"--from-(?:literal|file)=([^= ]+)=", flags))
    return found


def test_credentials_are_secret_files_the_settings_read(overlay, tmp_path, monkeypatch):
    """Every replica must share the history and the rate-limit counters (else N pods allow N x the limit),
    so both URLs are set in every overlay, from Secrets, and as files: environment variables are readable
    in /proc/*/environ. The projected volume's files are laid out here as the kubelet would, and the
    service's own Settings read them from DEEPFAKE_SECRETS_DIR: the front's four, and the job workers' two
    (the history and the job queue's broker, which the front enqueues on)."""
    _, objects = overlay
    settings = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    values = {
        "DEEPFAKE_API_KEYS": "ci:" + "a" * 64,
        "DEEPFAKE_DATABASE_URL": "postgresql+psycopg://u:pw@db/x",
        "DEEPFAKE_RATE_LIMIT_STORAGE": "redis://:pw@redis:6379/0",
        "DEEPFAKE_JOBS_BROKER_URL": "redis://:pw@redis:6379/0",
    }
    for name in SECRET_SETTINGS:
        monkeypatch.delenv(name, raising=False)  # the test session's own settings would win over the files
    for deployment, read in SECRETS_READ_BY.items():  # the front, and the workers with the broker's URL
        each = container(objects, deployment)
        for name in SECRET_SETTINGS:
            assert name not in settings and name not in {e["name"] for e in each.get("env", [])}, (deployment, name)
        projected = projected_secrets(objects, deployment)
        assert set(projected) == {SECRET_SETTINGS[name] for name in read}, deployment  # these, and no others
        folder = tmp_path / deployment
        folder.mkdir()
        for name in read:
            (folder / projected[SECRET_SETTINGS[name]]).write_text(values[name] + "\n")  # newline and all
        loaded = Settings(secrets_dir=folder)
        for name in read:
            field = name.removeprefix("DEEPFAKE_").lower()
            assert field in Settings.model_fields, f"{name}: no such setting in preprocess_service/settings.py"
            assert getattr(loaded, field) == values[name], (deployment, name)
    assert settings["DEEPFAKE_TRUSTED_PROXIES"] == ""  # none believed until the ingress's addresses are set
    checked = set()
    for document in objects:  # no Secret reaches any container of any workload as an environment variable
        for spec in pod_specs([document]):
            for each in containers_of(spec):
                checked.add(each["name"])
                for variable in each.get("env", []):
                    assert "secretKeyRef" not in variable.get("valueFrom", {}), (each["name"], variable["name"])
                assert not any("secretRef" in source for source in each.get("envFrom", [])), each["name"]
    assert {"api", "worker", "triton", "migrate"} <= checked


def test_the_cluster_requires_keys_and_database_tls(overlay):
    _, objects = overlay
    data = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    settings = {k.removeprefix("DEEPFAKE_").lower(): v for k, v in data.items() if k != "DEEPFAKE_SECRETS_DIR"}
    configured = Settings(**settings)  # the mount does not exist here
    assert configured.require_api_key is True
    assert configured.database_sslmode == "verify-full"
    api = container(objects, "deepfake-api")
    ca_mount = next(m for m in api["volumeMounts"] if str(configured.database_sslrootcert).startswith(m["mountPath"]))
    pod = find(objects, "Deployment", "deepfake-api")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == ca_mount["name"])
    assert volume["configMap"]["name"] == "deepfake-database-ca"


def _settings_fields() -> set[str]:
    return {f"DEEPFAKE_{name.upper()}" for name in Settings.model_fields}


def test_every_deepfake_setting_in_the_deployment_files_exists(overlay):
    _, objects = overlay
    used = set(find(objects, "ConfigMap", "deepfake-api-settings")["data"])
    for deployment in ("deepfake-api", "deepfake-worker"):
        used |= {e["name"] for e in container(objects, deployment).get("env", [])}
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
    assert {"configMapRef": {"name": "deepfake-api-settings"}} in migrate["envFrom"]  # same secrets dir and TLS
    secrets_dir = settings["DEEPFAKE_SECRETS_DIR"]
    mount = next(m for m in migrate["volumeMounts"] if m["mountPath"] == secrets_dir)
    volume = next(v for v in job["volumes"] if v["name"] == mount["name"])["secret"]
    assert volume["secretName"] == "deepfake-database"  # the URL alone: no API keys, no Redis
    assert volume["items"] == [{"key": "url", "path": "deepfake_database_url"}]
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


def test_services_select_the_right_pods(overlay):
    _, objects = overlay
    pod_labels = {
        name: find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("triton", "deepfake-api")
    }
    for service, deployment in (("triton", "triton"), ("deepfake-api", "deepfake-api")):
        selector = find(objects, "Service", service)["spec"]["selector"]
        assert selector.items() <= pod_labels[deployment].items()


def test_perf_job_uses_the_benchmark_parameters():
    job = (DEPLOY / "k8s" / "perf" / "job.yaml").read_text()
    script = (ROOT / "benchmarks" / "triton_perf.sh").read_text()
    for fragment in ("faces:", "features:30,2048", "-b 1", "--shape"):
        assert fragment in job and fragment in script
    assert "--shape faces:180,180,3" in job and 'CONCURRENCY:-"1 2 4 8"' in script and "--concurrency-range 1:8" in job


def test_the_perf_benchmark_reads_the_exported_configs(demo_repository, tmp_path, capsys):
    """benchmarks/triton_perf.sh takes the crop side and the batching-off variant from the export's
    config.pbtxt files; a reader tied to one layout of the text broke make bench-triton unnoticed."""
    from benchmarks import triton_perf_report

    triton_perf_report.input_size(demo_repository)
    assert capsys.readouterr().out.strip() == "180,180"
    triton_perf_report.variant(demo_repository, tmp_path / "off")
    originals = sorted(demo_repository.rglob("*.pbtxt"))
    assert any("dynamic_batching" in config.read_text() for config in originals)
    for config in originals:
        copy = tmp_path / "off" / config.relative_to(demo_repository)
        assert "dynamic_batching" not in copy.read_text() and "max_batch_size" in copy.read_text()


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


# --- Issue 22: the cluster's hardening, over the rendered YAML ---------------------------------------

PERF = DEPLOY / "k8s" / "perf"
KSERVE = DEPLOY / "k8s" / "kserve"
RESTRICTED_APIS = {"shared-memory", "model-repository", "logging", "trace", "statistics"}
PATCHED_TRITON = (25, 7)  # the first release with NVIDIA's August 2025 fixes


def labels_of(objects: list[dict], name: str) -> dict:
    return find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def policies_for(objects: list[dict], labels: dict) -> list[dict]:
    return [o["spec"] for o in objects if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"], labels)]


def flows(rules: list[dict], direction: str) -> set[tuple[str, int]]:
    """(peer, port) of each rule: the peer as 'pod:<name>', 'ns:<namespace>/<pod name>' or 'ip:<cidr>'."""
    found = set()
    for rule in rules:
        for peer in rule.get(direction, []):
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            pod = peer.get("podSelector", {}).get("matchLabels", {})
            name = pod.get("app.kubernetes.io/name") or pod.get("k8s-app") or "*"
            label = (
                f"ip:{peer['ipBlock']['cidr']}"
                if "ipBlock" in peer
                else (f"ns:{namespace}/{name}" if namespace else f"pod:{name}")
            )
            for port in rule["ports"]:
                found.add((label, port["port"]))
    return found


def test_triton_is_a_patched_release_everywhere():
    tags = []
    for path in (DEPLOY / "k8s" / "base", KSERVE, PERF):
        kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
        tags += [i["newTag"] for i in kustomization["images"] if i["name"] == "nvcr.io/nvidia/tritonserver"]
    tags.append(re.search(r"tritonserver:(\S+)", (DEPLOY / "docker" / "compose.yaml").read_text()).group(1))
    assert len(tags) == 4
    for tag in tags:
        year, month = (int(part) for part in re.match(r"(\d+)\.(\d+)-py3", tag).groups())
        assert (year, month) >= PATCHED_TRITON, tag
    for objects in (render("cpu"), render_dir(KSERVE), render_dir(PERF)):
        for spec in pod_specs(objects) + [o["spec"] for o in objects if o["kind"] == "ServingRuntime"]:
            for each in containers_of(spec):
                if "tritonserver" in each["image"]:
                    assert "24.10" not in each["image"], each["image"]


def test_tritons_admin_apis_need_the_key_from_a_file(overlay):
    _, objects = overlay
    triton = container(objects, "triton")
    script = triton["command"][2]
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        value = re.search(flag + r'="([^"]+)"', script).group(1)
        apis, _, header = value.partition(":")
        assert set(apis.split(",")) == RESTRICTED_APIS and header == "admin-key=$key", flag
    assert 'key="$(cat /var/run/secrets/triton-admin/key)"' in script and 'exec tritonserver "$@"' in script
    pod = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]
    mount = next(m for m in triton["volumeMounts"] if m["mountPath"] == "/var/run/secrets/triton-admin")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "triton-admin-key"


def test_the_manifests_command_passes_the_args_and_the_key(tmp_path):
    """Run the manifest's own command with sh, a stand-in `tritonserver` echoing its arguments, and the key
    file where the script reads it (the path rewritten into tmp): args (overlays append to them) pass
    through, and the key lands in both flags."""
    triton = container(render("cpu"), "triton")
    key_file = tmp_path / "key"
    key_file.write_text("s3cr3t")
    script = triton["command"][2].replace("/var/run/secrets/triton-admin/key", str(key_file))
    (tmp_path / "tritonserver").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tmp_path / "tritonserver").chmod(0o755)
    result = subprocess.run(
        ["sh", "-c", script, triton["command"][3], *triton["args"]],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    argv = result.stdout.splitlines()
    assert argv[: len(triton["args"])] == triton["args"] and "--model-config-name=cpu" in argv
    assert (
        f"--http-restricted-api={','.join(sorted(RESTRICTED_APIS, key=lambda a: script.index(a)))}:admin-key=s3cr3t"
        in argv
    )
    assert any(a.startswith("--grpc-restricted-protocol=") and a.endswith(":admin-key=s3cr3t") for a in argv)


def test_the_namespace_denies_by_default_and_allows_exact_flows(overlay):
    _, objects = overlay
    deny = find(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = find(objects, "NetworkPolicy", "allow-dns")["spec"]
    assert dns["podSelector"] == {} and flows(dns["egress"], "to") == {("ns:kube-system/kube-dns", 53)}
    api, triton, worker, migrate = (
        labels_of(objects, "deepfake-api"),
        labels_of(objects, "triton"),
        labels_of(objects, "deepfake-worker"),
        find(objects, "Job", next(o["metadata"]["name"] for o in objects if o["kind"] == "Job"))["spec"]["template"][
            "metadata"
        ]["labels"],
    )

    def allowed(labels: dict, kind: str) -> set[tuple[str, int]]:
        direction = {"ingress": "from", "egress": "to"}[kind]
        return set().union(*(flows(p.get(kind, []), direction) for p in policies_for(objects, labels)))

    assert allowed(api, "ingress") == {("ns:ingress-nginx/ingress-nginx", 8080), ("ns:monitoring/prometheus", 8080)}
    assert allowed(api, "egress") == {
        ("pod:triton", 8001),
        ("ns:deepfake-data/*", 5432),
        ("ns:deepfake-data/*", 6379),
        ("ns:monitoring/opentelemetry-collector", 4318),
        ("ns:kube-system/kube-dns", 53),
    }
    assert allowed(triton, "ingress") == {
        ("pod:deepfake-api", 8001),
        ("pod:deepfake-worker", 8001),
        ("ns:monitoring/prometheus", 8002),
    }
    assert allowed(triton, "egress") == {
        ("ip:0.0.0.0/0", 443),
        ("ns:monitoring/opentelemetry-collector", 4318),
        ("ns:kube-system/kube-dns", 53),
    }
    store = next(
        p for p in policies_for(objects, triton) for r in p.get("egress", []) for peer in r["to"] if "ipBlock" in peer
    )
    excepted = next(peer["ipBlock"]["except"] for r in store["egress"] for peer in r["to"] if "ipBlock" in peer)
    assert "169.254.0.0/16" in excepted and "10.0.0.0/8" in excepted  # cloud metadata, the cluster's own ranges
    assert allowed(worker, "ingress") == {("ns:monitoring/prometheus", WORKER_PORT)}  # /metrics, nothing else
    assert allowed(worker, "egress") == {
        ("pod:triton", 8001),
        ("ns:deepfake-data/*", 5432),
        ("ns:deepfake-data/*", 6379),
        ("ip:0.0.0.0/0", 443),  # webhooks, to the addresses callers give
        ("ip:0.0.0.0/0", 80),
        ("ns:monitoring/opentelemetry-collector", 4318),
        ("ns:kube-system/kube-dns", 53),
    }
    webhooks = next(
        peer["ipBlock"]
        for p in policies_for(objects, worker)
        for r in p.get("egress", [])
        for peer in r["to"]
        if "ipBlock" in peer
    )
    private = {"169.254.0.0/16", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"}
    assert private <= set(webhooks["except"])  # metadata, loopback, the cluster's ranges: never a webhook's target
    assert allowed(migrate, "ingress") == set()
    assert allowed(migrate, "egress") == {("ns:deepfake-data/*", 5432), ("ns:kube-system/kube-dns", 53)}


def test_the_model_repository_is_verified_before_triton_starts(overlay):
    _, objects = overlay
    source = find(objects, "ConfigMap", "triton-model-source")["data"]
    assert source["MODEL_REPOSITORY_URI"] == "" and source["MODEL_REPOSITORY_SHA256SUMS_DIGEST"] == ""
    pod = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]
    fetch, verify = pod["initContainers"]  # in this order: nothing runs on what was fetched before the check
    assert "MODEL_REPOSITORY_URI:?" in fetch["command"][2]  # no bucket named: fails, saying which key to set
    assert verify["args"] == ["python", "-m", "model_contract.repository_digests", "verify", "/models"]
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in verify["env"]}
    assert env["MODEL_REPOSITORY_SHA256SUMS_DIGEST"] == {
        "name": "triton-model-source",
        "key": "MODEL_REPOSITORY_SHA256SUMS_DIGEST",
    }
    assert verify["image"] == container(objects, "deepfake-api")["image"]  # the service image carries the checker
    assert all(m["readOnly"] for m in verify["volumeMounts"])
    mentions = "\n".join(p.read_text() for p in (DEPLOY / "k8s").rglob("*.yaml"))
    assert "s3://deepfake-models" not in mentions  # a bucket name anyone could register


def test_each_workload_has_its_own_account_and_no_token(overlay):
    _, objects = overlay
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {"deepfake-api", "triton", "deepfake-migrate", "deepfake-worker"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    for spec in pod_specs(objects):
        assert spec["serviceAccountName"] in accounts and spec["automountServiceAccountToken"] is False
    for spec in pod_specs(render_dir(PERF)):
        assert spec["automountServiceAccountToken"] is False


def test_pods_survive_a_drain(overlay):
    _, objects = overlay
    for name in ("triton", "deepfake-api"):
        deployment = find(objects, "Deployment", name)
        hpa = find(objects, "HorizontalPodAutoscaler", name)["spec"]
        pdb = find(objects, "PodDisruptionBudget", name)["spec"]
        assert "replicas" not in deployment["spec"], name  # the autoscaler owns the count
        assert hpa["minReplicas"] >= 2 and pdb["maxUnavailable"] == 1, name
        assert selects(pdb["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        assert hpa["minReplicas"] - pdb["maxUnavailable"] >= 1, name  # a drain leaves one serving
    spread = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_host = next(c for c in spread if c["topologyKey"] == "kubernetes.io/hostname")
    assert by_host["whenUnsatisfiable"] == "DoNotSchedule" and by_host["nodeTaintsPolicy"] == "Honor"
    triton_args = container(objects, "triton")["args"]
    age = int(next(a for a in triton_args if a.startswith("--grpc-max-connection-age=")).split("=")[1])
    grace = int(next(a for a in triton_args if a.startswith("--grpc-max-connection-age-grace=")).split("=")[1])
    timeout_ms = float(settings_of(objects)["DEEPFAKE_TRITON_TIMEOUT_S"]) * 1000
    assert age <= 120_000 and grace > timeout_ms  # new pods found within minutes; no call cut by the recycling
    settings = find(objects, "ConfigMap", "deepfake-api-settings")["data"]
    api_pod = find(objects, "Deployment", "deepfake-api")["spec"]["template"]["spec"]
    api = api_pod["containers"][0]
    drain = int(settings["DEEPFAKE_SHUTDOWN_DRAIN_S"])
    assert api["lifecycle"]["preStop"]["sleep"]["seconds"] + drain < api_pod["terminationGracePeriodSeconds"]
    assert drain > float(settings["DEEPFAKE_TRITON_TIMEOUT_S"])  # a request's model call ends within the drain
    triton_pod = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]
    triton = triton_pod["containers"][0]
    exit_timeout = int(next(a for a in triton["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1])
    assert (
        triton["lifecycle"]["preStop"]["sleep"]["seconds"] + exit_timeout < triton_pod["terminationGracePeriodSeconds"]
    )
    assert "startupProbe" in api and "startupProbe" in triton
    for each in (api, triton):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert each[probe].get("timeoutSeconds", 1) >= 2, (each["name"], probe)


def test_every_pod_has_bounded_disk_and_triton_a_read_only_root(overlay):
    name, objects = overlay
    for spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert "sizeLimit" in volume["emptyDir"], volume["name"]
        for each in containers_of(spec):
            assert each["securityContext"]["readOnlyRootFilesystem"] is True, each["name"]
            assert "ephemeral-storage" in each["resources"]["limits"], each["name"]
            assert "ephemeral-storage" in each["resources"]["requests"], each["name"]
    triton_pod = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]
    shm = next(v for v in triton_pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"] == "64Mi"  # was 1Gi, unused and counted against memory
    mounts = {m["mountPath"]: m["name"] for m in triton_pod["containers"][0]["volumeMounts"]}
    if name == "gpu-tensorrt":  # the engines survive the pod: on the PVC, at the path the config names
        config = (ROOT / "model_repository" / "deepfake_backbone" / "configs" / "gpu-tensorrt.pbtxt").read_text()
        cache_path = re.search(r'key: "trt_engine_cache_path"\s*value: "([^"]+)"', config).group(1)
        volume = next(v for v in triton_pod["volumes"] if v["name"] == mounts[cache_path])
        claim = find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_images_are_pinned_at_release_and_rendered_by_digest(tmp_path):
    """Every image a manifest uses goes through a kustomization's images: entry (so `release_images pin`
    reaches it), and a pinned copy of the manifests renders each one as name@sha256:…"""
    copy = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", copy)
    from deploy import release_images

    for path in copy.rglob("kustomization.yaml"):
        for entry in release_images.read_entries(path):
            fresh = next(e for e in release_images.read_entries(path) if e.name == entry.name)
            release_images.write_digest(fresh, "sha256:" + hashlib.sha256(entry.name.encode()).hexdigest())
    for rendered in [
        *(render_dir(copy / "overlays" / o) for o in ("cpu", "gpu", "gpu-tensorrt")),
        render_dir(copy / "kserve"),
        render_dir(copy / "perf"),
    ]:
        specs = pod_specs(rendered) + [o["spec"] for o in rendered if o["kind"] == "ServingRuntime"]
        images = [each["image"] for spec in specs for each in containers_of(spec)]
        assert images and all(re.search(r"@sha256:[0-9a-f]{64}$", image) for image in images), images


def test_the_build_context_leaves_out_keys_and_venvs():
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # an allowlist: nothing enters unless named
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "docker" / "service.Dockerfile").read_text(), re.M)
    sources = {part.rstrip("/") for line in copied for part in line.split()}
    assert all(any(src == a or src.startswith(a + "/") for a in allowed) for src in sources), (sources, allowed)
    assert not {".venv", "var", ".git", "model_repository"} & allowed, (sources, allowed)
    assert not (DEPLOY / "docker" / "triton.Dockerfile").exists()  # never ready from a clean checkout: removed


def test_kserve_runs_on_the_runtimes_ports_hardened():
    objects = render_dir(KSERVE)
    runtime = find(objects, "ServingRuntime", "deepfake-triton")["spec"]["containers"][0]
    assert {p["containerPort"] for p in runtime["ports"]} == {9000}
    assert "--grpc-port=9000" in runtime["args"] and "--http-port=8080" in runtime["args"]
    assert runtime["securityContext"]["runAsNonRoot"] is True and runtime["securityContext"]["readOnlyRootFilesystem"]
    predictor = find(objects, "InferenceService", "deepfake")["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "triton" and predictor["automountServiceAccountToken"] is False
    assert (
        predictor["model"]["runtime"] == "deepfake-triton" and "deepfake-models" not in predictor["model"]["storageUri"]
    )


def test_the_namespace_enforces_the_restricted_profile(overlay):
    _, objects = overlay
    labels = find(objects, "Namespace", "deepfake")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_the_perf_job_is_bounded_and_meant_for_staging():
    objects = render_dir(PERF)
    job = find(objects, "Job", "triton-perf")
    assert job["metadata"]["namespace"] == "deepfake-staging" and 0 < job["spec"]["activeDeadlineSeconds"] <= 3600
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"perf Job\s*\n?\(`deploy/k8s/perf`\) runs against \*\*staging\*\*", readme)


# --- The job workers, scaled by KEDA on the queue's length ------------------------------------------------


def test_the_worker_runs_the_jobs_the_front_enqueues(overlay):
    """The worker is the front's image and settings running `deepfake-worker`, locked down like the front,
    its /metrics scraped, its job given time to end on SIGTERM; the front only enqueues."""
    _, objects = overlay
    assert settings_of(objects)["DEEPFAKE_JOBS_WORKER"] == "external"  # the front enqueues, the workers run
    deployment = find(objects, "Deployment", "deepfake-worker")
    pod = deployment["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert "replicas" not in deployment["spec"]  # KEDA's ScaledObject owns the count
    assert worker["args"] == ["deepfake-worker"] and "command" not in worker
    api = container(objects, "deepfake-api")
    assert worker["image"] == api["image"] and worker["envFrom"] == api["envFrom"]  # the front's image and settings
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["DEEPFAKE_WORKER_PORT"] == str(WORKER_PORT)
    assert env["DEEPFAKE_SIGNING_KEY"] == next(e["value"] for e in api["env"] if e["name"] == "DEEPFAKE_SIGNING_KEY")
    assert {port["name"]: port["containerPort"] for port in worker["ports"]} == {"http": WORKER_PORT}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
        assert worker[probe].get("timeoutSeconds", 1) >= 2, probe
    # on SIGTERM the running job gets the drain to finish, then the process closes, all within the grace period
    drain = int(settings_of(objects)["DEEPFAKE_SHUTDOWN_DRAIN_S"])
    assert pod["terminationGracePeriodSeconds"] >= drain + 30
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert worker["securityContext"] == api["securityContext"]  # read-only root, no escalation, no capabilities
    assert projected_secrets(objects, "deepfake-worker")[("deepfake-jobs-broker", "url")] == "deepfake_jobs_broker_url"
    jobs_dir = settings_of(objects)["DEEPFAKE_JOBS_DIR"]  # a job's video: written by the front, read by a worker
    claims = set()
    for deployment in ("deepfake-api", "deepfake-worker"):
        spec = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == jobs_dir)
        claims.add(next(v for v in spec["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]["claimName"])
    (claim,) = claims  # the same claim, on whichever nodes the pods run
    assert find(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    monitor = find(objects, "PodMonitor", "deepfake-worker")["spec"]
    assert selects(monitor["selector"], labels_of(objects, "deepfake-worker"))
    assert [(e["port"], e["path"]) for e in monitor["podMetricsEndpoints"]] == [("http", "/metrics")]
    pdb = find(objects, "PodDisruptionBudget", "deepfake-worker")["spec"]
    assert pdb["maxUnavailable"] == 1 and selects(pdb["selector"], labels_of(objects, "deepfake-worker"))


def test_keda_scales_the_workers_on_the_queue_length(overlay):
    """KEDA counts the list Huey queues the jobs in, on the broker the workers read (one Secret: its url for
    the pods, its address and password for KEDA), and no HPA of ours competes with KEDA's."""
    _, objects = overlay
    scaled = find(objects, "ScaledObject", "deepfake-worker")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "deepfake-worker"}
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    hpas = [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert "deepfake-worker" not in hpas  # KEDA makes its own (keda-hpa-deepfake-worker); two would fight
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == JOBS_QUEUE_KEY
    assert int(trigger["metadata"]["listLength"]) >= 1
    assert not {"address", "host", "password"} & set(trigger["metadata"])  # from the Secret, never literals
    auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["secretTargetRef"]}
    assert set(refs) == {"address", "password"}
    assert {secret for secret, _ in refs.values()} == {"deepfake-jobs-broker"}
    documented = documented_secrets()
    mounted = set(projected_secrets(objects, "deepfake-worker")) | set(projected_secrets(objects, "deepfake-api"))
    for secret, key in {*refs.values(), *mounted}:  # every key read is one the comments say to create
        assert key in documented.get(secret, set()), (secret, key, documented)


def test_the_keda_schemas_refuse_what_keda_would():
    """The vendored CRD schemas bite: a misspelt field, a number where KEDA takes a string, a missing
    required field each fail, as `kubectl apply` would refuse them."""
    objects = render("cpu")
    scaled, auth = (
        find(objects, "ScaledObject", "deepfake-worker"),
        find(objects, "TriggerAuthentication", "deepfake-jobs-broker"),
    )
    assert not list(keda_validator("ScaledObject").iter_errors(scaled))
    assert not list(keda_validator("TriggerAuthentication").iter_errors(auth))
    misspelt, numeric, untriggered, keyless = (copy.deepcopy(o) for o in (scaled, scaled, scaled, auth))
    misspelt["spec"]["minReplicas"] = misspelt["spec"].pop("minReplicaCount")  # the HPA's spelling
    numeric["spec"]["triggers"][0]["metadata"]["listLength"] = 2  # trigger metadata are strings
    del untriggered["spec"]["triggers"]
    del keyless["spec"]["secretTargetRef"][0]["key"]
    for kind, broken in (("ScaledObject", misspelt), ("ScaledObject", numeric), ("ScaledObject", untriggered)):
        assert list(keda_validator(kind).iter_errors(broken)), broken["spec"]
    assert list(keda_validator("TriggerAuthentication").iter_errors(keyless))


CHECKOV_TARGETS = {  # what checkov scans: every rendered overlay, KServe, the perf Job, the Dockerfile
    "cpu.yaml": DEPLOY / "k8s" / "overlays" / "cpu",
    "gpu.yaml": DEPLOY / "k8s" / "overlays" / "gpu",
    "gpu-tensorrt.yaml": DEPLOY / "k8s" / "overlays" / "gpu-tensorrt",
    "kserve.yaml": KSERVE,
    "perf.yaml": PERF,
}


def test_checkov_finds_nothing_and_every_skip_says_why(tmp_path):
    checkov = ROOT / ".venv" / "checkov" / "bin" / "checkov"
    assert checkov.exists(), "checkov is installed by `make test` (make checkov: pinned, from PyPI)"
    for name, path in CHECKOV_TARGETS.items():
        (tmp_path / name).write_text(kustomize(path))
    shutil.copy(DEPLOY / "docker" / "service.Dockerfile", tmp_path / "service.Dockerfile")
    files = [*CHECKOV_TARGETS, "service.Dockerfile"]
    result = subprocess.run(
        [
            str(checkov),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
            *(arg for f in files for arg in ("-f", f)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for r in reports for c in r["results"]["failed_checks"]]
    assert failed == [] and result.returncode == 0, failed or result.stderr[-2000:]
    passed_files = {c["file_path"].lstrip("/") for r in reports for c in r["results"]["passed_checks"]}
    # every file was read and checked; checkov has no checks for KServe's kinds (custom resources), so
    # its ServingRuntime's container is held to the same rules by test_kserve_runs_on_the_runtimes_ports_hardened
    assert passed_files == set(files) - {"kserve.yaml"}
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "deployment.md").read_text()
    for check in skipped:
        assert len(check["check_result"]["suppress_comment"]) > 40, check  # a reason, not a bare id
        assert check["check_id"] in readme, check["check_id"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43"}
