"""A small Python client for the deepfake detection service, and the ``deepfake-client`` CLI.

from deepfake_client import DeepfakeClient
with DeepfakeClient("http://127.0.0.1:8080", api_key=None) as client:
    answer = client.predict("video.mp4")
    assert client.verify_receipt_offline("video.mp4", answer["receipt"]).valid
    assert client.verify_attestation_offline("video.mp4", client.sign("video.mp4")["attestation"]).valid
    job = client.wait_job(client.submit_job("long.mp4")["id"])  # a job: polled every 2 s until finished

A job's webhook, checked where it arrives: ``verify_webhook(secret, signature_header, body)``
(``deepfake_client.webhooks``, standard library only).
"""

from deepfake_client.api import AttestationCheck, DeepfakeClient, ReceiptCheck, ServiceError
from deepfake_client.webhooks import InvalidSignature as InvalidWebhookSignature
from deepfake_client.webhooks import verify as verify_webhook

__all__ = [
    "AttestationCheck",
    "DeepfakeClient",
    "InvalidWebhookSignature",
    "ReceiptCheck",
    "ServiceError",
    "verify_webhook",
]
