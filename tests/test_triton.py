"""Against a real Triton Inference Server process: configs, both protocols, batching, faults."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as httpclient

from preprocess_service.settings import Settings
from testing.server import post_file, running_service


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_metadata_and_config_match_the_export(triton, protocol):
    client = (
        httpclient.InferenceServerClient(triton.http_url)
        if protocol == "http"
        else grpcclient.InferenceServerClient(triton.grpc_url)
    )
    as_json = {} if protocol == "http" else {"as_json": True}
    backbone = client.get_model_metadata("deepfake_backbone", **as_json)
    temporal = client.get_model_metadata("deepfake_temporal", **as_json)
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in backbone["inputs"]] == [
        ("faces", "UINT8", [-1, 180, 180, 3])
    ]
    assert [(t["name"], t["datatype"]) for t in backbone["outputs"]] == [("features", "FP32")]
    assert [(t["name"], [int(d) for d in t["shape"]]) for t in temporal["inputs"]] == [("features", [-1, -1, 2048])]
    assert {t["name"] for t in temporal["outputs"]} == {"probabilities", "logits"}
    config = client.get_model_config("deepfake_backbone", **as_json)
    config = config.get("config", config)
    assert int(config["max_batch_size"]) == 64 and "dynamic_batching" in config
    assert config["parameters"]["untrained_demo"]["string_value"] == "true"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"  # --model-config-name=cpu picked configs/cpu.pbtxt


def test_triton_computes_what_onnx_runtime_computes(triton, demo_repository):
    import onnxruntime

    faces = np.random.default_rng(3).integers(0, 256, (5, 180, 180, 3), dtype=np.uint8)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    infer_input = grpcclient.InferInput("faces", list(faces.shape), "UINT8")
    infer_input.set_data_from_numpy(faces)
    served = client.infer("deepfake_backbone", [infer_input]).as_numpy("features")
    local = onnxruntime.InferenceSession(str(demo_repository / "deepfake_backbone/1/model.onnx"))
    np.testing.assert_allclose(served, local.run(None, {"faces": faces})[0], atol=1e-5)


def _executed_batch_sizes(triton, model: str) -> dict[int, int]:
    stats = httpx.get(f"http://{triton.http_url}/v2/models/{model}/stats").json()["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def test_concurrent_requests_are_batched_by_the_server(triton):
    before = _executed_batch_sizes(triton, "deepfake_temporal")

    async def burst() -> None:
        client = grpc_aio.InferenceServerClient(triton.grpc_url)
        features = np.random.default_rng(0).standard_normal((1, 8, 2048), dtype=np.float32)

        async def one():
            infer_input = grpcclient.InferInput("features", list(features.shape), "FP32")
            infer_input.set_data_from_numpy(features)
            return await client.infer("deepfake_temporal", [infer_input])

        await asyncio.gather(*(one() for _ in range(48)))
        await client.close()

    asyncio.run(burst())
    after = _executed_batch_sizes(triton, "deepfake_temporal")
    grown = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    assert sum(size * count for size, count in grown.items()) == 48
    assert max(grown) > 1, f"48 concurrent requests ran unbatched: {grown}"


@pytest.fixture(scope="module")
def embedded_scores(demo_repository, seed_videos, tmp_path_factory) -> dict[str, list]:
    settings = Settings(model_repository=demo_repository, keys_dir=tmp_path_factory.mktemp("keys"))
    with running_service(settings) as url:
        return {video.name: post_file(url, video, "/predict_csv/").json()["frames_csv"] for video in seed_videos}


@pytest.mark.parametrize("backend,shm", [("triton-http", False), ("triton-grpc", False), ("triton-grpc", True)])
def test_service_on_triton_gives_the_embedded_probabilities(
    triton, seed_videos, embedded_scores, tmp_path, backend, shm
):
    settings = Settings(
        backend=backend,
        triton_http_url=triton.http_url,
        triton_grpc_url=triton.grpc_url,
        triton_shm=shm,
        keys_dir=tmp_path,
    )
    with running_service(settings) as url:
        assert httpx.get(url + "/readyz").json()["backend"] == backend
        regions = httpx.get(f"http://{triton.http_url}/v2/systemsharedmemory/status").json()
        assert (len([r for r in regions if r["name"].startswith("deepfake_faces_")]) == settings.max_in_flight) == shm
        for video in seed_videos:
            rows = post_file(url, video, "/predict_csv/").json()["frames_csv"]
            expected = embedded_scores[video.name]
            assert [r["frame_index"] for r in rows] == [r["frame_index"] for r in expected]
            for row, reference in zip(rows, expected, strict=True):
                if reference["p_fake"] is None:
                    assert row["p_fake"] is None
                else:
                    assert row["p_fake"] == pytest.approx(reference["p_fake"], abs=1e-5)
        verdict = post_file(url, seed_videos[0]).json()
        assert verdict["model"]["backend"] == backend and verdict["frames_analyzed"] == 30


def test_service_answers_503_while_triton_is_down_and_recovers(demo_repository, seed_videos, tmp_path):
    from deploy.triton_local.server import start_triton

    server = start_triton(demo_repository)
    settings = Settings(backend="triton-grpc", triton_grpc_url=server.grpc_url, keys_dir=tmp_path, triton_timeout_s=10)
    try:
        with running_service(settings) as url:
            assert post_file(url, seed_videos[2]).status_code == 200
            server.stop(kill=True)
            down = post_file(url, seed_videos[2])
            assert down.status_code == 503 and down.json()["error"]["code"] == "backend_unavailable"
            assert httpx.get(url + "/readyz").status_code == 503
            assert httpx.get(url + "/healthz").status_code == 200  # alive: do not restart the pod for this
            server.restart()
            deadline = time.monotonic() + 30
            while httpx.get(url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the service did not see Triton come back"
                time.sleep(0.2)
            assert post_file(url, seed_videos[2]).status_code == 200
    finally:
        server.stop()


def test_the_launcher_stops_its_server_on_sigterm_and_refuses_busy_ports(demo_repository, tmp_path):
    """`make triton` under a process manager: SIGTERM must not leave tritonserver on the ports."""
    import signal
    import subprocess
    import sys

    from deploy.ports import free_port, port_is_free, wait_until

    ports = [free_port(), free_port(), free_port()]
    command = [
        sys.executable,
        "-m",
        "deploy.triton_local.server",
        "--repository",
        str(demo_repository),
        "--http-port",
        str(ports[0]),
        "--grpc-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
    ]
    log = tmp_path / "launcher.log"
    with log.open("wb") as output:
        launcher = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: "Triton ready" in log.read_text(errors="replace"),
            240,
            "the launcher",
            alive=lambda: launcher.poll() is None,
            interval_s=0.25,
        )
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "already in use" in second.stderr
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        wait_until(lambda: all(port_is_free(port) for port in ports), 30, "the ports")
    finally:
        if launcher.poll() is None:
            launcher.kill()
