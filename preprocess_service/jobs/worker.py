"""deepfake-worker: runs the queued jobs, beside the front (a cluster's worker Deployment, scaled by
KEDA on the queue's length), on the same settings, model backend and database as the front.

Huey's consumer takes the messages (``DEEPFAKE_JOBS_CONCURRENCY`` threads) in the main thread; the
jobs themselves run on one asyncio loop in a thread of its own, on the same ``Services`` the front
builds (analyzer, inference backend, history), so a job's windows batch in Triton with everyone's
requests. SIGTERM is graceful: the running jobs get ``DEEPFAKE_SHUTDOWN_DRAIN_S`` to finish; a job
cut off there (or by a kill) is taken back when its lease lapses and runs again elsewhere.
``/metrics`` (and ``/healthz``, the same page) on ``DEEPFAKE_WORKER_PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.config
import threading
from collections.abc import Iterator

from prometheus_client import start_http_server

from preprocess_service.access import policy_for
from preprocess_service.jobs.service import Jobs
from preprocess_service.logs import log_config
from preprocess_service.metrics import Metrics
from preprocess_service.services import Services
from preprocess_service.settings import Settings

log = logging.getLogger("deepfake.worker")


@contextlib.contextmanager
def running_services(settings: Settings, metrics: Metrics) -> Iterator[tuple[Services, asyncio.AbstractEventLoop]]:
    """``Services`` opened on an event loop in a thread of its own, and closed on leaving."""
    access = policy_for(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="jobs-loop", daemon=True)
    thread.start()
    stop = asyncio.Event()
    opened: asyncio.Future[Services] = loop.create_future()

    async def hold() -> None:
        try:
            async with Services.open(settings, metrics, access) as services:
                opened.set_result(services)
                await stop.wait()
        except BaseException as error:
            if not opened.done():
                opened.set_exception(error)
            raise

    held = asyncio.run_coroutine_threadsafe(hold(), loop)
    try:
        services = asyncio.run_coroutine_threadsafe(_wait(opened), loop).result()
        yield services, loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        with contextlib.suppress(Exception):
            held.result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


async def _wait(future: asyncio.Future[Services]) -> Services:
    return await future


def wait_for_jobs(services: Services, loop: asyncio.AbstractEventLoop, timeout_s: float = 600) -> Jobs:
    """The jobs need the history's database: a worker started before it is migrated waits for it."""

    async def built() -> Jobs:
        while True:
            try:
                return services.jobs()
            except Exception as error:
                log.warning("waiting for the jobs' database: %s", error)
                await asyncio.sleep(5)

    return asyncio.run_coroutine_threadsafe(asyncio.wait_for(built(), timeout_s), loop).result()


def parser() -> argparse.ArgumentParser:
    description = "Run the queued deepfake-detection jobs (settings: the same DEEPFAKE_* as deepfake-serve)."
    return argparse.ArgumentParser(prog="deepfake-worker", description=description)


def main(argv: list[str] | None = None) -> None:
    parser().parse_args(argv)
    settings = Settings().model_copy(update={"jobs_worker": "external"})  # this process is the worker
    logging.config.dictConfig(log_config(settings.log_format, settings.log_level, settings.log_levels))
    if not settings.third_party_logs:
        from preprocess_service.native_logs import filter_native_stderr

        filter_native_stderr(json_lines=settings.log_format == "json")
    metrics = Metrics()
    if settings.worker_port:
        start_http_server(settings.worker_port, registry=metrics.registry)
    with running_services(settings, metrics) as (services, loop):
        jobs = wait_for_jobs(services, loop)
        jobs.queue.bind(lambda job_id: asyncio.run_coroutine_threadsafe(jobs.runner.run(job_id), loop).result())
        consumer = jobs.queue.huey.create_consumer(
            workers=settings.jobs_concurrency,
            worker_type="thread",
            periodic=False,
            graceful_signal="TERM",  # Kubernetes' stop: let running jobs finish (within the drain)
            shutdown_timeout=settings.shutdown_drain_s,
            max_delay=1.0,  # an idle worker polls at least every second
        )
        log.info("deepfake-worker: %d job(s) at once, queue %s", settings.jobs_concurrency, jobs.queue.huey.name)
        consumer.run()


if __name__ == "__main__":
    main()
