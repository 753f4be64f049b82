"""A small Python client for the deepfake detection service, and the ``deepfake-client`` CLI.

from deepfake_client import DeepfakeClient
with DeepfakeClient("http://127.0.0.1:8080", api_key=None) as client:
    answer = client.predict("video.mp4")
    assert client.verify_receipt_offline("video.mp4", answer["receipt"]).valid
"""

from deepfake_client.api import DeepfakeClient, ReceiptCheck, ServiceError

__all__ = ["DeepfakeClient", "ReceiptCheck", "ServiceError"]
