"""What ``make triton`` shows of Triton's output: the one error line every CPU host gets
("CudaDriverHelper has not been initialized.", although the CPU configuration needs no driver)
becomes a plain note; every other line passes unchanged and in order. Lines as Triton prints them
(glog: severity and date, time, thread id, file:line]; 2.51 quotes its messages, older releases
did not)."""

from __future__ import annotations

import sys

import pytest

from deploy.triton_local import server
from deploy.triton_local.server import NO_CUDA_DRIVER_NOTE, shown_line

NO_DRIVER = [
    b'E1207 10:00:00.123456 123 server.cc:241] "CudaDriverHelper has not been initialized."\n',
    b'E1207 10:00:00.123456 123 cuda_driver_helper.cc:57] "CudaDriverHelper has not been initialized."\n',
    b"E0211 06:05:55.864870 2860 server.cc:243] CudaDriverHelper has not been initialized.\n",
    b'E1207 10:00:00.123456 123 server.cc:241] "CudaDriverHelper has not been initialized."',  # the last, no newline
]
KEPT = [
    b'I1207 10:00:00.100000 123 cuda_memory_manager.cc:117] "CUDA memory pool disabled"\n',
    b'W1207 10:00:00.100000 123 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned'
    b' memory pool will not be available: CUDA driver version is insufficient for CUDA runtime version"\n',
    b"E1207 10:00:01.000000 123 model_lifecycle.cc:654] \"failed to load 'deepfake_backbone' version 1\"\n",
    b'I1207 10:00:02.000000 123 grpc_server.cc:2558] "Started GRPCInferenceService at 127.0.0.1:8001"\n',
    b"+---------+------+--------+\n",
    b"CudaDriverHelper has not been initialized.\n",  # not Triton's log line: someone else's words
]


@pytest.mark.parametrize("line", NO_DRIVER)
def test_the_cuda_driver_line_becomes_a_plain_note(line: bytes) -> None:
    shown = shown_line(line)
    assert shown == NO_CUDA_DRIVER_NOTE
    assert shown.count(b"\n") == 1 and shown.startswith(b"note: no CUDA driver on this host")
    assert b"CPU-only" in shown and not shown.startswith(b"E")


@pytest.mark.parametrize("line", KEPT)
def test_every_other_line_passes_unchanged(line: bytes) -> None:
    assert shown_line(line) is line


def test_the_output_reaches_the_log_filtered_and_in_order(tmp_path) -> None:
    """Through the pipe and the forwarding thread, as ``make triton`` runs it (a stand-in process)."""
    lines = [KEPT[0], NO_DRIVER[0], KEPT[3]]
    log = tmp_path / "out.log"
    command = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({b''.join(lines)!r})"]
    process, forwarder = server._spawn(command, log, {}, shown_line)
    process.wait(timeout=30)
    assert forwarder is not None
    forwarder.join(timeout=10)
    assert log.read_bytes() == KEPT[0] + NO_CUDA_DRIVER_NOTE + KEPT[3]


def test_without_a_filter_the_log_file_gets_the_output_as_it_is(tmp_path) -> None:
    log = tmp_path / "out.log"
    command = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({NO_DRIVER[0]!r})"]
    process, forwarder = server._spawn(command, log, {}, None)
    process.wait(timeout=30)
    assert forwarder is None and log.read_bytes() == NO_DRIVER[0]


@pytest.mark.parametrize(("value", "unfiltered"), [(None, False), ("false", False), ("true", True), ("1", True)])
def test_deepfake_third_party_logs_lets_it_through(monkeypatch, value, unfiltered) -> None:
    if value is None:
        monkeypatch.delenv("DEEPFAKE_THIRD_PARTY_LOGS", raising=False)
    else:
        monkeypatch.setenv("DEEPFAKE_THIRD_PARTY_LOGS", value)
    assert server.third_party_logs() is unfiltered
