"""Everything made once per application and shared by requests, opened and closed side by side.

``Services.open(settings, ...)`` is the application's lifespan: each resource is opened next to the
line that registers its closing (an ``AsyncExitStack``), so what opens last closes first and a
failure half-way closes exactly what was opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from preprocess_service import artifacts, retention, tracing
from preprocess_service.access import AccessPolicy
from preprocess_service.admission import Admission
from preprocess_service.errors import BackendUnavailable
from preprocess_service.faces import FaceDetector
from preprocess_service.history.recorder import History, open_history, watch_forever
from preprocess_service.inference import InferenceBackend, make_backend
from preprocess_service.integrity import Signer, load_signer
from preprocess_service.jobs.service import Jobs, JobsUnavailable
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analyzer
from preprocess_service.predictions import Predictions
from preprocess_service.settings import Settings, deprecated_names_in

log = logging.getLogger("deepfake")


@dataclass
class Services:
    settings: Settings
    backend: InferenceBackend
    analyzer: Analyzer
    signer: Signer
    metrics: Metrics
    access: AccessPolicy
    admission: Admission
    history: History
    predictions: Predictions
    _jobs: Jobs | None = None

    def jobs(self) -> Jobs:
        """The jobs, built on the history's database once it is open (it may open after the start); 503
        until then, and where jobs are off (DEEPFAKE_JOBS_WORKER=off) or the history is."""
        if self._jobs is None:
            if self.settings.jobs_worker == "off":
                raise JobsUnavailable("jobs are off here (DEEPFAKE_JOBS_WORKER=off)")
            store = self.history.store
            if store is None:
                raise JobsUnavailable("jobs need the history database, which is not open: see /readyz")
            try:
                self._jobs = Jobs.build(self.settings, store.engine, self.analyzer, self.predictions, self.metrics)
            except (OSError, ValueError) as error:  # the queue's file or broker URL, the webhook key
                log.warning("jobs unavailable: %s", error)
                raise JobsUnavailable(f"jobs could not start here: {error.__class__.__name__} (see the log)") from error
        return self._jobs

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, metrics: Metrics, access: AccessPolicy, backend: InferenceBackend | None = None
    ) -> AsyncIterator[Services]:
        """``backend``: one made by the caller (a fake one in the fast tests); else from the settings."""
        for warning in deprecated_names_in(os.environ):
            log.warning(warning)
        async with AsyncExitStack() as stack:
            log.info("backbone precision: %s", settings.served_plan.reason)
            backend = backend or make_backend(settings)
            stack.push_async_callback(backend.close)
            detector = FaceDetector(
                settings.face_model_path,
                settings.face_min_confidence,
                settings.face_margin,
                settings.face_haar_max_side,
            )
            stack.callback(detector.close)
            # Both pools take DEEPFAKE_CPU_THREADS (default 2), a number the deployment states rather than
            # one read off the machine: in a pod, os.cpu_count() and sched_getaffinity see the node's cores,
            # not the CPU quota (the manifests give 2 CPUs and set 2). Per analysis, one decode thread and
            # up to 4 frames queued for faces (CropCollector), so at most cpu_threads analyses decode at once
            # (the others wait: the trace's "queued" span) and their face work shares cpu_threads threads.
            # The backbone runs beside them (DEEPFAKE_OVERLAP_CHUNK) on its own engine threads (embedded) or
            # on Triton; on a CPU box both draw on the same cores (docs/benchmarks.md).
            pool = ThreadPoolExecutor(max_workers=settings.cpu_threads, thread_name_prefix="decode")
            stack.callback(pool.shutdown, wait=True)
            face_pool = ThreadPoolExecutor(max_workers=settings.cpu_threads, thread_name_prefix="faces")
            stack.callback(face_pool.shutdown, wait=True)
            history = await asyncio.to_thread(open_history, settings, metrics)
            stack.callback(history.close)
            if tracing.enabled(settings) and history.store is not None:
                tracing.instrument_engine(history.store.engine)
            analyzer = Analyzer(settings, detector, backend, pool, metrics, face_pool)
            signer = load_signer(settings.signing_key, settings.keys_dir, settings.previous_keys_dir)
            services = cls(
                settings=settings,
                backend=backend,
                analyzer=analyzer,
                signer=signer,
                metrics=metrics,
                access=access,
                admission=Admission(settings.max_in_flight, settings.retry_after_s, metrics),
                history=history,
                predictions=Predictions(settings, analyzer, history, signer),
            )
            with contextlib.suppress(BackendUnavailable):  # not ready yet: /readyz says so, requests retry
                await analyzer.model_info()
            for chore in _chores(settings, history):
                stack.callback(asyncio.create_task(chore).cancel)
            if settings.jobs_worker != "off":
                stack.callback(asyncio.create_task(_jobs_forever(services)).cancel)
            yield services


def _chores(settings: Settings, history: History) -> list:
    """What runs beside the requests for the application's life: retention, the images' TTL sweep."""
    chores = [retention.purge_forever(history, settings)]
    if history.waiting():  # configured but not open yet: keep trying, whether or not /readyz is probed
        chores.append(watch_forever(history))
    if settings.artifacts:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        chores.append(artifacts.sweep_forever(settings.artifacts_dir, settings.artifacts_ttl_s))
    return chores


async def _jobs_forever(services: Services) -> None:
    """Once the jobs can be built: their chore, and (embedded) this process's workers."""
    while True:
        try:
            jobs = services.jobs()
            break
        except JobsUnavailable:
            await asyncio.sleep(5)
    workers = services.settings.jobs_concurrency if services.settings.jobs_worker == "embedded" else 0
    await asyncio.gather(jobs.tidy_forever(), *(jobs.work_forever() for _ in range(workers)))
