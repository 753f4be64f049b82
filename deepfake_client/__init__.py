"""A small Python client for the deepfake detection service, and the ``deepfake-client`` CLI.

from deepfake_client import DeepfakeClient
with DeepfakeClient("http://127.0.0.1:8080", api_key=None) as client:
    answer = client.predict("video.mp4")
    assert client.verify_receipt_offline("video.mp4", answer["receipt"]).valid
    assert client.verify_attestation_offline("video.mp4", client.sign("video.mp4")["attestation"]).valid
"""

from deepfake_client.api import AttestationCheck, DeepfakeClient, ReceiptCheck, ServiceError

__all__ = ["AttestationCheck", "DeepfakeClient", "ReceiptCheck", "ServiceError"]
