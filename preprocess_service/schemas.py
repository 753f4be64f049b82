"""Response models. Every field the original returned is kept; new ones are only added."""

from __future__ import annotations

from pydantic import BaseModel, Field

from preprocess_service.video import VideoMetadata


class DisplayFrame(BaseModel):
    frame_index: int
    frame_time_sec: float
    url: str | None = Field(None, description="set only when the service writes artifacts (DEEPFAKE_ARTIFACTS=1)")
    confidence: float | None
    label: str
    p_fake: float | None = None


class CroppedFace(BaseModel):
    frame_index: int
    url: str | None = None
    box: tuple[int, int, int, int] = Field(description="x, y, width, height in the upright frame")
    detector: str


class FrameRow(BaseModel):
    frame_index: int
    frame_time_sec: float
    confidence: float | None = Field(description="winning class probability x 100; null without a face")
    label: str = Field(description="FAKE, REAL, or NO_FACE")
    p_fake: float | None = None
    detector: str | None = Field(None, description="mediapipe or haar; null without a face")
    box: tuple[int, int, int, int] | None = Field(None, description="x, y, width, height in the upright frame")


class StageTimes(BaseModel):
    """Seconds. decode + faces + inference = total; with the backbone beside the decoding
    (DEEPFAKE_OVERLAP_CHUNK), total < front + model."""

    decode: float = Field(description="decoding, with the faces found meanwhile (a wait for a worker included)")
    faces: float = Field(description="face work left once decoding ended")
    inference: float = Field(description="model time left once decoding and faces were done")
    total: float = Field(description="the analysis, end to end")
    front: float | None = Field(None, description="decode + faces (null in answers stored before it existed)")
    model: float | None = Field(
        None, description="backbone calls and temporal head, wherever they fell (null in answers stored before)"
    )


class PreprocessingModel(BaseModel):
    name: str
    crop: str = Field(description="face (the largest face's box) or full_frame")
    size: int
    resize: str = Field(description="pil_bilinear (as torchvision's Resize on PIL) or cv2_linear")
    channel_order: str
    normalisation: str


class ModelInfoModel(BaseModel):
    family: str
    untrained_demo: bool = Field(description="true: random demo weights, the verdict means nothing")
    backend: str
    precision: str = Field(description="the backbone's arithmetic: fp32, bf16 or int8 (checked at export)")
    plan: str = Field(
        "", description="the precision plan served, e.g. int8-mixed (2 of 19 blocks at fp32) (precision_plans.json)"
    )
    plan_reason: str = Field("", description="why this plan: DEEPFAKE_PRECISION, or what auto measured and chose")
    runtime: str = Field(description="the engine that runs the models, as it reports itself")
    checkpoint_sha256: str
    architecture: dict[str, str] = Field(
        description="sizes read from the checkpoint, and the export's choices (num_heads, activation, batch_first)"
    )
    preprocessing: PreprocessingModel


RECEIPT_DESCRIPTION = (
    "compact JWS (RS256, kid = integrity key id) over the file's SHA-256 and size, the model's identity, both"
    " verdicts and a digest of every per-frame score; check it offline with GET /integrity/public-keys, or"
    " with POST /integrity/verify-receipt"
)


class VerdictModel(BaseModel):
    result: str = Field(description="FAKE or REAL")
    confidence: float = Field(description="winning class probability x 100 (original: mean over its frames)")
    p_fake: float
    frame_indices: list[int] = Field(description="the frames this rule looked at")
    threshold: float = Field(
        description="P(FAKE) at or above which result is FAKE: 0.5, or the one an evaluation recorded with the model"
    )


class PredictResponse(BaseModel):
    result: str = Field(description="FAKE or REAL, by the rule in verdict_rule")
    confidence: float = Field(description="winning class probability x 100")
    p_fake: float
    verdict_rule: str = Field(description="sequence or original (DEEPFAKE_VERDICT)")
    verdicts: dict[str, VerdictModel] = Field(description="every rule's verdict, whichever fills result")
    untrained_demo: bool = Field(
        False, description="true: the untrained demo model answered, and the verdict means nothing (also in model)"
    )
    processing_time_sec: float
    filename: str
    sha256_hex: str
    analyzed_at: str
    metadata: VideoMetadata
    frames_for_display: list[DisplayFrame]
    cropped_faces: list[CroppedFace]
    frames_csv_indices: list[int]
    frames_analyzed: int
    frames_with_face: int
    stage_times_sec: StageTimes
    model: ModelInfoModel
    frames: list[FrameRow] = Field(description="every sampled frame's score (what frames_csv holds)")
    receipt: str = Field(description=RECEIPT_DESCRIPTION)
    history_id: str | None = Field(None, description="this analysis in GET /analyses/{id}; null without history")
    cached: bool = Field(False, description="answered from the history: same file, same model (?refresh=1 forces)")


class PredictCsvResponse(BaseModel):
    untrained_demo: bool = Field(False, description="true: the untrained demo model answered (also in model)")
    filename: str
    frames_csv: list[FrameRow]
    model: ModelInfoModel
    receipt: str = Field(description=RECEIPT_DESCRIPTION)


class ReceiptVerifyResponse(BaseModel):
    valid: bool = Field(description="signed by a key of this service, and about this very file")
    key_id: str | None
    issued_at: str | None
    sha256_hex: str = Field(description="the uploaded file's SHA-256")
    claims: dict | None = Field(description="what the service said, when the signature holds")
    error: str | None


class SignResponse(BaseModel):
    video_filename: str
    sha256_hex: str
    attestation: str = Field(
        description="a compact JWS (RS256, header kid = key_id, typ deepfake-attestation+jws) whose claims are the "
        "file's sha256 (hex), size (bytes) and iat (the signing time, seconds): send it back in the `attestation` "
        "field of /integrity/verify, or check it offline with /integrity/jwks.json"
    )
    signature_base64: str = Field(
        description="deprecated (use attestation): the older binary envelope of key id, signing time (ms) and an RSA "
        "PKCS#1 v1.5 SHA-256 signature binding them to the file's SHA-256; still verifies",
        deprecated=True,
    )
    signed_at: str = Field(description="the signing time both bind (whole seconds)")
    key_id: str
    format: str = Field("attestation-v1", description="the format of signature_base64", deprecated=True)


class VerifyResponse(BaseModel):
    video_filename: str
    valid: bool
    kind: str = Field(
        description="jws-attestation (the attestation field), attestation (the deprecated envelope), legacy (a bare "
        "signature over the file hash, as the original made), or unknown"
    )
    sha256_hex: str
    verified_at: str
    key_id: str | None = Field(None, description="the key the attestation or signature names or was verified with")
    signed_at: str | None = Field(None, description="the signing time the attestation binds")
    error: str | None = None


class PublicKeyResponse(BaseModel):
    key_id: str
    algorithm: str = "RSA-2048 PKCS#1 v1.5 SHA-256"
    public_key_pem: str


class PublicKeysResponse(BaseModel):
    active_key_id: str
    keys: list[PublicKeyResponse]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class AnalysisSummary(BaseModel):
    id: str
    created_at: str
    filename: str
    size: int
    sha256_hex: str
    result: str
    p_fake: float
    rule: str
    precision: str
    checkpoint_sha256: str = Field(description="the model that made it (with precision: which answers compare)")
    untrained_demo: bool
    processing_time_sec: float
    request_id: str | None = Field(None, description="the request that made it: its X-Request-ID and log lines")


class AnalysisPage(BaseModel):
    items: list[AnalysisSummary]
    total: int
    page: int
    per_page: int


class StoredAnalysis(BaseModel):
    id: str
    created_at: str = Field(description="ISO 8601, UTC with its offset")
    answer: dict = Field(description="the /predict/ answer as it was given")


class ErasureResponse(BaseModel):
    deleted: int = Field(description="analyses erased, with their stored images")
    ids: list[str]


class StatsResponse(BaseModel):
    analyses: int
    by_result: dict[str, int]
    untrained_demo: int = Field(description="analyses answered by the untrained demo model")
    latency_s: dict[str, float] = Field(description="p50, p90, p99 and mean processing time")
