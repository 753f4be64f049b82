"""Two real tritonserver processes behind one front, reached through one gRPC channel with the
round-robin policy (issue 21): what a headless Service gives the front in a cluster, here as gRPC's
``ipv4:`` address list. Each server's own statistics say whether it took inferences.

Seen to fail with the channel as it was (pick_first, no retries): the 40 requests went 40 to the
first server and 0 to the second. Recovery measured here: 0.4 to 2.3 s after the restarted server
was ready, in 5 of 5 runs (bound 15 s; the channel's reconnect backoff is capped at 2 s).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from preprocess_service.settings import Settings
from testing.server import post_file, running_service

RUNS = 5
BACK_WITHIN_S = 15.0  # restarted and ready -> inferences again (the channel's reconnect cap is 2 s)


def _inferences(server) -> int:
    """The backbone's successful inferences, as the server itself counts them."""
    try:
        stats = httpx.get(f"http://{server.http_url}/v2/models/deepfake_backbone/stats", timeout=5).json()
    except httpx.HTTPError:
        return -1
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


@pytest.fixture
def two_tritons(demo_repository):
    from deploy.triton_local.server import start_triton

    servers = [start_triton(demo_repository), start_triton(demo_repository)]
    yield servers
    for server in servers:
        server.stop()


def test_grpc_spreads_over_every_triton_and_a_killed_one_takes_traffic_again(two_tritons, seed_videos, tmp_path):
    first, second = two_tritons
    settings = Settings(
        backend="triton-grpc",
        triton_grpc_url=f"ipv4:{first.grpc_url},{second.grpc_url}",
        keys_dir=tmp_path,
        history=False,
        num_frames=4,  # the spread and the faults are the point, not the video
        triton_timeout_s=10,
        rate_limit="100000/minute",  # one address sends every request here
    )
    video = seed_videos[2]
    with running_service(settings) as url:
        before = [_inferences(first), _inferences(second)]
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: post_file(url, video).status_code, range(40)))
        assert statuses == [200] * 40
        grown = [_inferences(first) - before[0], _inferences(second) - before[1]]
        assert min(grown) >= 10, f"40 requests were not spread over both servers: {grown}"

        recovered_in = []
        for _ in range(RUNS):
            with ThreadPoolExecutor(4) as pool:
                running = [pool.submit(lambda: post_file(url, video).status_code) for _ in range(12)]
                time.sleep(0.5)
                second.stop(kill=True)  # mid-run: some calls are in flight on it
                during = [future.result() for future in running]
            assert set(during) <= {200, 503}, f"a killed replica must cost 503s at worst, never {during}"
            after_kill = [post_file(url, video).status_code for _ in range(4)]
            assert after_kill == [200] * 4, "with one replica down the other takes every call (retried)"

            second.restart()  # same ports; ready when this returns
            ready_at, count = time.monotonic(), _inferences(second)
            while _inferences(second) <= count:
                assert time.monotonic() - ready_at < BACK_WITHIN_S, "the restarted server took no traffic"
                assert post_file(url, video).status_code == 200
            recovered_in.append(round(time.monotonic() - ready_at, 2))
        print(f"restarted Triton took traffic again after {recovered_in} s")
