"""The gRPC channel to Triton, configured the way gRPC itself spreads and retries calls.

A plain ClusterIP Service hands a gRPC channel one connection, to one Triton pod, for its whole life:
the pods an autoscaler adds would sit idle. With a headless Service (``dns:///triton-headless:8001``)
the name resolves to every pod's address, and the ``round_robin`` policy keeps a connection to each
and takes them in turn. gRPC resolves the name again when a connection closes or fails, not on a
timer: a pod that goes away is dropped at once, but a pod the autoscaler adds is found at the next
re-resolution (docs/triton.md says how to force one). The retry policy in the service config
retries a call that failed with UNAVAILABLE (a pod killed or draining) on another connection, a
bounded number of times; keepalive pings find a silently dead peer; the reconnect backoff is capped,
so a restarted Triton takes traffic again within seconds instead of after gRPC's default of up to
two minutes. Triton must accept the keepalive pings (its ``--grpc-keepalive-permit-without-calls``
and ping-interval flags, set in the manifests and by deploy/triton_local), or it answers them with
GOAWAY.

With a service mesh (Istio, Linkerd) the sidecar balances per request instead: use the mesh's
Service name and ``pick_first``, and leave retries to one layer (``DEEPFAKE_TRITON_GRPC_LB``).
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE_BYTES = 2**31 - 1  # what tritonclient sets by default: a batch of crops is tens of MiB
# gRPC retries only a call whose request it still holds, by default 256 KiB of it: a backbone call
# (30 crops of 180 px: 2.9 MB; 64 of 224 px: 9.6 MB) would never be retried. Held only while a call
# is in flight.
RETRY_BUFFER_PER_CALL = 32 * 2**20
RETRY_BUFFER_TOTAL = 256 * 2**20
RETRIED_STATUS = ["UNAVAILABLE"]  # never DEADLINE_EXCEEDED: the service's own deadline is final


def service_config(load_balancing: str, attempts: int) -> dict[str, Any]:
    """gRPC's service config (its JSON schema): the load-balancing policy, and a retry policy for every
    method of Triton's GRPCInferenceService."""
    config: dict[str, Any] = {"loadBalancingConfig": [{load_balancing: {}}]}
    if attempts > 1:
        config["methodConfig"] = [
            {
                "name": [{"service": "inference.GRPCInferenceService"}],
                "retryPolicy": {
                    "maxAttempts": attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": RETRIED_STATUS,
                },
            }
        ]
    return config


def channel_options(load_balancing: str = "round_robin", attempts: int = 3, max_reconnect_s: float = 2.0) -> list:
    """The options handed to tritonclient's gRPC client (its ``channel_args``, which replace its own)."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.lb_policy_name", load_balancing),
        ("grpc.service_config", json.dumps(service_config(load_balancing, attempts))),
        ("grpc.enable_retries", 1 if attempts > 1 else 0),
        ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_PER_CALL),
        ("grpc.retry_buffer_size", RETRY_BUFFER_TOTAL),
        ("grpc.keepalive_time_ms", 20_000),  # a ping every 20 s on an idle connection
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", int(max_reconnect_s * 1000)),
        ("grpc.dns_min_time_between_resolutions_ms", 1_000),
    ]
