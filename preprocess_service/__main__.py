"""``deepfake-serve``: run the service with uvicorn; flags override DEEPFAKE_* settings."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

import uvicorn


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens there: said in words before uvicorn would die with Errno 98."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def parser() -> argparse.ArgumentParser:
    """deepfake-serve's options (a function of its own: the documentation test parses every command)."""
    options = argparse.ArgumentParser(prog="deepfake-serve", description=__doc__)
    options.add_argument("--host", default="127.0.0.1")
    options.add_argument("--port", type=int, default=8080)
    options.add_argument("--backend", choices=("embedded", "triton-http", "triton-grpc"))
    options.add_argument("--model-repository", help="exported models (embedded backend)")
    options.add_argument("--triton-url", help="host:port of Triton (HTTP or gRPC port, by --backend)")
    options.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "int8"), help="backbone precision to serve (default auto)"
    )
    options.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), help="embedded engine")
    options.add_argument("--workers", type=int, default=1, help="server processes")
    options.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade the history database (DEEPFAKE_DATABASE_URL) to this release's schema and exit: "
        "what the Kubernetes migration Job runs, once, under a database lock",
    )
    return options


def migrate_history() -> None:
    """``deepfake-serve --migrate``: the schema upgrade alone, for a Job that runs it before a rollout."""
    from preprocess_service.history.store import HEAD_REVISION, HistoryStore
    from preprocess_service.settings import get_settings

    settings = get_settings()
    store = HistoryStore(settings.database_url, settings.database_sslmode, settings.database_sslrootcert)
    try:
        store.migrate()
        print(f"deepfake-serve: the history database is at revision {store.revision()} (head {HEAD_REVISION})")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.migrate:
        migrate_history()
        return
    if port_in_use(args.host, args.port):
        print(
            f"deepfake-serve: port {args.port} on {args.host} is already in use (another deepfake-serve?); "
            f"choose another: deepfake-serve --port {args.port + 1}, or make serve PORT={args.port + 1}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    # Settings are read from the environment in every worker process, so flags go there too.
    if args.backend:
        os.environ["DEEPFAKE_BACKEND"] = args.backend
    if args.model_repository:
        os.environ["DEEPFAKE_MODEL_REPOSITORY"] = args.model_repository
    if args.precision:
        os.environ["DEEPFAKE_PRECISION"] = args.precision
    if args.runtime:
        os.environ["DEEPFAKE_RUNTIME"] = args.runtime
    if args.triton_url:
        grpc = (args.backend or os.environ.get("DEEPFAKE_BACKEND", "")) == "triton-grpc"
        os.environ["DEEPFAKE_TRITON_GRPC_URL" if grpc else "DEEPFAKE_TRITON_HTTP_URL"] = args.triton_url
    from preprocess_service.access import server_options
    from preprocess_service.logs import log_config
    from preprocess_service.settings import get_settings

    settings = get_settings()
    if not settings.third_party_logs:
        from preprocess_service.native_logs import filter_native_stderr

        filter_native_stderr(json_lines=settings.log_format == "json")

    # A bounded drain: on SIGTERM, requests in flight get this long, then the process exits anyway
    # (a stalled upload must not keep a pod terminating forever).
    uvicorn.run(
        "preprocess_service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=settings.shutdown_drain_s,
        log_config=log_config(settings.log_format, settings.log_level, settings.log_levels),
        **server_options(settings.trusted_proxies),  # X-Forwarded-For believed only from trusted proxies
    )


if __name__ == "__main__":
    main()
