"""Every setting of the service, in one place, read from ``DEEPFAKE_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from model_contract import backbone_model_name
from model_contract.identity import Rule
from model_contract.precision_plans import PLANS_FILE
from preprocess_service.face_model import DEFAULT_PATH as DEFAULT_FACE_MODEL
from preprocess_service.precision_choice import ServedPlan, choose_plan

Backend = Literal["embedded", "triton-http", "triton-grpc"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
Runtime = Literal["auto", "onnxruntime", "openvino"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
TRITON_OVERLAP_CHUNK = 8  # benchmarks/overlap.py: chunks of 4, 8, 15 measured; 8 the best embedded p50
IN_CLUSTER = "in a cluster, pass it as a file in DEEPFAKE_SECRETS_DIR (environment variables show in /proc/*/environ)"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_", env_file=None, extra="ignore", populate_by_name=True)

    # Where credentials come from in a cluster (settings_customise_sources below)
    secrets_dir: Path | None = Field(
        None,
        description="a directory of files named after settings (deepfake_api_keys, deepfake_database_url, ...), "
        "one value per file: Kubernetes Secrets mounted as files; init arguments and DEEPFAKE_* variables "
        "win over a file; a directory that does not exist stops the service at start",
    )

    # Inference
    backend: Backend = "embedded"
    model_repository: Path = Path("model_repository")
    precision: Precision = Field(
        "auto",
        description="backbone arithmetic: auto = the fastest plan `deepfake-export --precision auto` published"
        " within its bound (precision_plans.json; fp32 without one); bf16/int8 serve deepfake_backbone_<p>",
    )
    runtime: Runtime = Field(
        "auto",
        description="embedded engine: auto = the faster measured one per precision "
        "(fp32: onnxruntime, bf16 and int8: openvino)",
    )
    backbone_model: str | None = Field(None, description="default: deepfake_backbone[_<precision>]")
    temporal_model: str = "deepfake_temporal"
    triton_http_url: str = "127.0.0.1:8000"
    triton_grpc_url: str = Field(
        "127.0.0.1:8001",
        description="host:port, or dns:///triton-headless:8001 (every pod of a headless Service, round robin)",
    )
    triton_grpc_lb: Literal["round_robin", "pick_first"] = Field(
        "round_robin", description="gRPC load balancing over the name's addresses; pick_first behind a service mesh"
    )
    triton_grpc_attempts: int = Field(
        3, ge=1, le=5, description="gRPC retry policy: attempts of a call that failed UNAVAILABLE (1 = no retry)"
    )
    triton_grpc_max_reconnect_s: float = Field(
        2.0, gt=0, description="cap of gRPC's reconnect backoff: a restarted Triton takes traffic again within it"
    )
    triton_timeout_s: float = Field(30.0, gt=0, description="per inference call")
    triton_shm: bool = Field(False, description="send face crops through system shared memory (same host only)")
    inference_threads: int = Field(
        1,
        ge=1,
        description="embedded backend: model calls run at once; ONNX Runtime already uses every core for one, "
        "and each concurrent call holds its own activations",
    )
    ort_memory_arena: bool = Field(True, description="embedded backend: ONNX Runtime keeps freed activation memory")
    overlap_chunk: int | None = Field(
        None,
        ge=0,
        description="the backbone starts on a video's first crops while later frames still decode: a call "
        "as soon as this many new crops are cut (all those waiting), the rest in one call after decoding; "
        "0 = one call after decoding (the sequential path). Answers are the same either way. Unset: "
        f"{TRITON_OVERLAP_CHUNK} with Triton (the model runs off this CPU: 20-26 % less per request measured), "
        "0 embedded (ONNX Runtime already uses every core: overlapping measured 1-9 % slower on 2 cores)",
    )

    # Video and faces
    num_frames: int = Field(30, ge=1, le=200, description="frames sampled per video (the seed's 30)")
    display_frames: int = Field(4, ge=0, description="frames shown in /predict/ answers")
    min_frames: int = Field(2, ge=1, description="a video with fewer frames is refused")
    face_model_path: Path = DEFAULT_FACE_MODEL
    face_min_confidence: float = Field(0.5, ge=0, le=1)
    face_margin: float = Field(0.0, ge=0, le=1, description="box growth on each side, as a fraction (seed: 0)")
    face_haar_max_side: int = Field(
        0,
        ge=0,
        description="Haar fallback on a frame shrunk to this side: ~4x faster, "
        "but other boxes than the original's; 0 = full frame, as the original",
    )
    verdict: Rule = Field(
        "sequence",
        description="rule behind result/confidence/p_fake: sequence (the temporal "
        "model over all faces) or original (the seed's vote of 4 frames scored alone)",
    )
    max_video_pixels: int = Field(3840 * 2160, description="larger frames are refused (header and every decoded frame)")
    max_video_frames: int = Field(100_000, description="longer videos are refused before decoding")
    max_decoded_frames: int = Field(3000, ge=1, description="frames one analysis may decode to reach its samples")
    max_decode_s: float = Field(20.0, gt=0, description="wall time one analysis may spend demuxing and decoding")

    # Uploads and load
    max_upload_mb: float = Field(100.0, gt=0)
    upload_idle_timeout_s: float = Field(15.0, gt=0, description="no upload byte for this long: 408")
    upload_min_rate_kib_s: float = Field(32.0, ge=0, description="slower uploads (after 5 s) are cut off with 408")
    shutdown_drain_s: int = Field(30, ge=1, description="on SIGTERM, requests in flight get this long to finish")
    upload_dir: Path | None = Field(None, description="temporary upload folder (default: the system's)")
    cpu_threads: int = Field(
        2,
        ge=1,
        validation_alias=AliasChoices("DEEPFAKE_CPU_THREADS", "DEEPFAKE_WORKERS"),
        description="threads for decoding and face detection (old name: DEEPFAKE_WORKERS)",
    )
    max_in_flight: int = Field(
        8,
        ge=1,
        validation_alias=AliasChoices("DEEPFAKE_MAX_IN_FLIGHT", "DEEPFAKE_MAX_PENDING"),
        description="uploads admitted at once; more get 503 + Retry-After (old name: DEEPFAKE_MAX_PENDING)",
    )
    retry_after_s: int = 2

    # Display artifacts (off by default: nothing is written to disk on the hot path)
    artifacts: bool = False
    artifacts_dir: Path = Path("var/artifacts")
    artifacts_ttl_s: int = 3600

    # Access (see access.py): keys stored hashed, "id:sha256hex[:operator],..."; none configured = open (a laptop)
    api_keys: str = Field(
        "",
        repr=False,
        description="id:sha256-hex[:operator] entries, comma-separated; "
        f"an operator key sees and erases every owner's analyses; {IN_CLUSTER}: deepfake_api_keys",
    )
    require_api_key: bool = Field(False, description="with keys configured: needed for every route, not only signing")
    rate_limit: str = Field("120/minute", description="per API key, else per client address (limits syntax)")
    signing_rate_limit: str = Field("30/minute", description="signing and verifying, per caller")
    auth_failure_limit: str = Field(
        "20/minute", description="failed authentications per client address; past it, 429 before any key is checked"
    )
    rate_limit_storage: str = Field(
        "memory://",
        repr=False,  # redis://:password@host/0
        description="where rate-limit counters live (limits storage URL): memory:// is per process; "
        f"redis://host:6379/0 is shared by every replica; with a password, {IN_CLUSTER}: "
        "deepfake_rate_limit_storage",
    )
    trusted_proxies: str = Field(
        "",
        description="addresses (IPs or CIDRs, comma-separated; * for any) whose X-Forwarded-For is believed; "
        "default none: the socket's peer is the client",
    )
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty = CORS off")

    # History (preprocess_service/history): every answer stored; SQLite here, PostgreSQL in a cluster
    history: bool = Field(True, description="store every /predict/ answer")
    database_url: str = Field(
        "sqlite:///var/history.sqlite3",
        repr=False,  # holds the database password
        description=f"SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db; {IN_CLUSTER}: deepfake_database_url",
    )
    database_sslmode: SslMode | None = Field(
        None,
        description="PostgreSQL: the least TLS the history's connections use (libpq sslmode), set in the "
        "cluster's configuration: a weaker sslmode in DEEPFAKE_DATABASE_URL's query is raised to it; "
        "ignored for SQLite",
    )
    database_sslrootcert: Path | None = Field(
        None,
        description="PostgreSQL: CA certificate(s) the server's certificate is verified against "
        "(verify-ca, verify-full); ignored for SQLite",
    )
    migrate_on_start: bool = Field(
        True,
        description="upgrade the history's schema at start (under a database lock); false where a Kubernetes "
        "Job runs `deepfake-serve --migrate` once: the service then waits for the expected revision",
    )
    history_cache: bool = Field(
        True,
        description="answer a file this owner already analyzed with the same model from the history "
        "(?refresh=1 forces)",
    )
    history_retention_days: float = Field(
        90, ge=0, description="analyses (and their artifacts) older than this are purged; 0 = kept forever"
    )
    history_max_per_owner: int = Field(
        10_000, ge=0, description="only the newest this many analyses per owner are kept; 0 = no bound"
    )
    history_purge_interval_s: float = Field(3600, gt=0, description="how often the retention purge runs")

    # Jobs (preprocess_service/jobs, docs/jobs.md): long videos and batches, answered later
    jobs_worker: Literal["embedded", "external", "off"] = Field(
        "embedded",
        description="embedded: this process also runs the jobs (a laptop); external: deepfake-worker processes "
        "do (a cluster); off: the /jobs routes answer 503",
    )
    jobs_broker_url: str = Field(
        "",
        repr=False,  # redis://:password@host/1
        description="the jobs' queue: redis://host:6379/1 (shared by the front and the workers); empty: a SQLite "
        f"file in jobs_dir (one machine); {IN_CLUSTER}: deepfake_jobs_broker_url",
    )
    jobs_dir: Path = Field(
        Path("var/jobs"), description="the videos waiting for their jobs (shared by the front and the workers)"
    )
    jobs_concurrency: int = Field(1, ge=1, le=64, description="jobs one process runs at once")
    jobs_max_unfinished_per_owner: int = Field(100, ge=1, description="queued + running jobs per owner; more: 429")
    jobs_lease_s: float = Field(
        120, gt=0, description="a running job whose worker is silent this long is taken back (queued again)"
    )
    jobs_max_attempts: int = Field(2, ge=1, description="runs a job gets when its workers die; then it fails")
    jobs_requeue_after_s: float = Field(
        900, gt=0, description="a job queued this long without being picked up is put on the queue again"
    )
    jobs_retention_days: float = Field(7, gt=0, description="finished jobs (and their answers) kept this long")
    jobs_max_video_s: float = Field(3 * 3600, gt=0, description="the longest video a job takes")
    timeline_fps: float = Field(2.0, gt=0, le=30, description="timeline samples per second of video")
    timeline_max_samples: int = Field(
        1800, ge=2, le=20_000, description="at most this many samples per video (longer videos: sparser)"
    )
    timeline_window: int = Field(20, ge=1, description="samples per window of the temporal model (≤ its max_time)")
    timeline_stride: int = Field(10, ge=1, description="samples between the starts of consecutive windows")
    webhook_allow_private: bool = Field(
        False, description="let webhooks go to loopback, link-local and private addresses (tests, one machine)"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="one webhook attempt, connect to last byte")
    webhook_max_attempts: int = Field(5, ge=1, le=20, description="webhook attempts, with exponential backoff")
    worker_port: int = Field(8081, ge=0, le=65535, description="deepfake-worker's /metrics and /healthz (0: none)")

    # Traces (tracing.py): OpenTelemetry, off unless an endpoint is given
    otlp_endpoint: str = Field(
        "", description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; empty = no export"
    )
    otel_service_name: str = Field("deepfake-api", description="service.name of the traces")
    tracing: bool = Field(
        False, description="trace with the process's own tracer provider (tests, or an SDK set up around the app)"
    )

    # Logs (logs.py)
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object a line (the container image sets it); text: readable lines"
    )
    log_level: str = Field("info", description="the service's and uvicorn's loggers")
    log_levels: str = Field("", description="per logger, e.g. deepfake.history=debug,uvicorn.access=warning")
    third_party_logs: bool = Field(
        False, description="let MediaPipe/LiteRT's native log lines through (deepfake-serve filters them out)"
    )

    # Integrity
    signing_key: Path | None = Field(None, description="PEM private key, e.g. a mounted Kubernetes Secret")
    keys_dir: Path = Path("var/keys")
    previous_keys_dir: Path | None = Field(None, description="public keys (*.pem) rotated out; still verify")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' order (init > environment > dotenv > secret files), with the secret files'
        directory chosen at run time: ``secrets_dir`` given at init, else DEEPFAKE_SECRETS_DIR.

        A directory that is not there raises (pydantic-settings would only warn): a mistyped mount
        path must not start a service without its API keys, open to anyone."""
        chosen = init_settings().get("secrets_dir") or env_settings().get("secrets_dir")
        if not chosen:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        directory = Path(chosen).expanduser()
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            raise SettingsError(
                f"DEEPFAKE_SECRETS_DIR {str(directory)!r} {what}: the secret files (deepfake_api_keys, "
                "deepfake_database_url, ...) are mounted elsewhere, or not at all"
            )
        return init_settings, env_settings, dotenv_settings, SecretsSettingsSource(settings_cls, secrets_dir=directory)

    @field_validator("secrets_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """DEEPFAKE_SECRETS_DIR= (empty) is no directory, not the working directory."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _shared_memory_needs_one_server(self) -> Settings:
        """Shared-memory regions are registered with one Triton; a round-robin channel over several
        would send the inference that reads them to another, which does not have them."""
        several = "," in self.triton_grpc_url or self.triton_grpc_url.startswith("dns:")
        if self.triton_shm and self.backend == "triton-grpc" and several and self.triton_grpc_lb == "round_robin":
            raise ValueError(
                "DEEPFAKE_TRITON_SHM needs one Triton on this host: with several addresses in "
                "DEEPFAKE_TRITON_GRPC_URL, set DEEPFAKE_TRITON_GRPC_LB=pick_first or turn shared memory off"
            )
        return self

    @property
    def backbone_chunk(self) -> int:
        """DEEPFAKE_OVERLAP_CHUNK, or the measured default for this backend (see the field)."""
        if self.overlap_chunk is not None:
            return self.overlap_chunk
        return 0 if self.backend == "embedded" else TRITON_OVERLAP_CHUNK

    @property
    def served_plan(self) -> ServedPlan:
        """The precision really served: ``auto`` resolved against the repository's plan table, once per
        version of that file, so the backend, the start-up log and every answer name the same plan."""
        table = self.model_repository / PLANS_FILE
        version = table.stat().st_mtime_ns if table.is_file() else 0
        key = (self.precision, self.runtime, self.backend, self.model_repository, self.backbone_model)
        return _served_plan(*key, version)

    @property
    def backbone_model_name(self) -> str:
        return self.backbone_model or backbone_model_name(self.served_plan.precision)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


DEPRECATED_NAMES = {"DEEPFAKE_WORKERS": "DEEPFAKE_CPU_THREADS", "DEEPFAKE_MAX_PENDING": "DEEPFAKE_MAX_IN_FLIGHT"}


def deprecated_names_in(environment: Mapping[str, str]) -> list[str]:
    """Old environment names still read, each with a warning: they named the wrong thing."""
    return [f"{old} is deprecated; use {new}" for old, new in DEPRECATED_NAMES.items() if old in environment]


@lru_cache
def get_settings() -> Settings:
    return Settings()


@lru_cache(maxsize=32)
def _served_plan(
    precision: str, runtime: str, backend: str, repository: Path, backbone_model: str | None, version: int
) -> ServedPlan:
    del version  # only part of the key: a re-exported table is read afresh
    return choose_plan(precision, runtime, backend, repository, backbone_model)
