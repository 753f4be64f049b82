"""Task queues for the jobs, measured on this machine: Huey 3.5 on SQLite and on Redis (what the
service uses, configured as preprocess_service/jobs/queue.py and deepfake-worker configure it) and on
PostgreSQL (its PostgresHuey storage, which the service does not use), RQ
and Dramatiq on Redis, Procrastinate on PostgreSQL. Redis and PostgreSQL are started here from the
machine's binaries (deploy/local_servers.py, as the tests start them). Prints a table, writes
benchmarks/results/queues.json.

    make bench-queues    # installs the bench-queues extra (RQ, Dramatiq, Procrastinate), then runs:
    .venv/bin/python benchmarks/queues.py [--quick] [--only huey-sqlite rq ...] [--kill-wait 80]

Every task is the same: it appends its id, the time it started (CLOCK_MONOTONIC, one clock for every
process on Linux) and its pid to a file, and (in the kill test only) then sleeps. Its one argument is a
32-hex job id, as the service sends. Each worker runs one task at a time (DEEPFAKE_JOBS_CONCURRENCY's
default), as its own process started here.

1. Enqueue: median µs per enqueue, over the messages of the two throughput runs (no worker running).
2. Throughput: those messages (2 x 2000) drained by 1, then 2 worker processes; tasks/s between the
   5th and the 95th percentile of the start times (a worker's start-up is left out); a run stops
   after 30 s, its rate over the tasks that ran by then.
3. Latency: one idle worker, 300 messages sent one at a time, each after the last one started and a
   random 0-50 ms gap; enqueue call to task start, p50 / p95. Then 3 sent after 1.5-3.5 s of idle
   (random, so that a polling worker is caught at any point of its backed-off wait).
4. Worker killed: a task that sleeps 30 s; once it has started, the worker and every process under
   it get SIGKILL (a pod dying) and a replacement worker starts at once; is the message run again, and after
   how long (bounded by --kill-wait)? Each library with its own way of finding a dead worker's message,
   its detection times shortened where it has a setting (KILL_SETTINGS, in the JSON): all candidates
   at once, each on its own queue.

A candidate whose library (or server) is missing is skipped, with the pip (or make) command in its
row and in the JSON ("skipped").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT = ROOT / "benchmarks" / "results" / "queues.json"
LOG_ENV, SLEEP_ENV = "BENCH_QUEUES_LOG", "BENCH_QUEUES_SLEEP_S"
PIP = '.venv/bin/pip install -c .venv/serve-constraints.txt -e ".[bench-queues]"' + " (or make bench-queues)"
KILL_TASK_S = 30.0
IDLE_S = (1.5, 3.5)  # the idle wait before each idle sample
LATENCY_GAP_S = 0.05  # the longest random pause between two latency samples
THROUGHPUT_CAP_S = 30.0  # a throughput run stops here; its rate is over the tasks that ran
REDIS_DATABASES = {"huey-redis": 1, "rq": 2, "dramatiq": 3}  # one Redis, a database each (kill tests run at once)

# How each library finds a dead worker's message, as set for the kill test (the rest of the runs use
# the libraries' defaults). "default" is what an unconfigured deployment gets.
KILL_SETTINGS: dict[str, dict] = {
    "huey-sqlite": {"mechanism": "none: a message is deleted when a worker takes it (no acknowledgement)"},
    "huey-redis": {"mechanism": "none: a message is popped when a worker takes it (no acknowledgement)"},
    "huey-postgres": {"mechanism": "none: a message's row is deleted when a worker takes it (no acknowledgement)"},
    "rq": {
        "mechanism": "the job stays in StartedJobRegistry until its heartbeat TTL lapses; a worker's registry "
        "maintenance then retries it (Retry(max=1) on enqueue) or moves it to FailedJobRegistry",
        "set": {"job_monitoring_interval": 5, "worker_ttl": 20, "maintenance_interval": 5},
        "default": {"job_monitoring_interval": 30, "worker_ttl": 420, "maintenance_interval": 600},
        "floor": "heartbeat TTL = min(monitoring interval, time left) + 60 s, the 60 s fixed in RQ",
    },
    "dramatiq": {
        "mechanism": "unacked messages of a broker whose heartbeat is older than heartbeat_timeout are "
        "requeued by queue maintenance, which runs on a random fraction of other workers' fetches",
        "set": {"heartbeat_timeout_ms": 10_000, "maintenance_chance": 100_000},
        "default": {"heartbeat_timeout_ms": 60_000, "maintenance_chance": 1_000},
        "floor": "maintenance_chance is out of 1,000,000 fetches (default 0.1 %; an idle worker fetches ~1/s)",
    },
    "procrastinate": {
        "mechanism": "jobs of a worker whose heartbeat is older than a limit are listed by "
        "job_manager.get_stalled_jobs() and retried by a task the application schedules (its docs' "
        "retry_stalled_jobs); run here every 2 s in the replacement worker",
        "set": {"update_heartbeat_interval": 2, "seconds_since_heartbeat": 10, "retry_stalled_every_s": 2},
        "default": {"update_heartbeat_interval": 10, "seconds_since_heartbeat": 30, "retry_stalled": "not run"},
    },
}


# ------------------------------------------------------------------------------------------------ the task


_log_fd: int | None = None


def record(job_id: str) -> None:
    """The task: one line (id, start time, pid) appended to the file the worker was given."""
    global _log_fd
    started = time.monotonic()
    if _log_fd is None:
        _log_fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_log_fd, f"{job_id} {started:.6f} {os.getpid()}\n".encode())
    sleep_s = float(os.environ.get(SLEEP_ENV) or 0)
    if sleep_s:
        time.sleep(sleep_s)


class Records:
    """The task lines written so far: id -> [(start time, pid)], read on from where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.starts = path, 0, {}
        self._partial = b""

    def poll(self) -> dict[str, list[tuple[float, int]]]:
        if self.path.exists():
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = self._partial + file.read()
                self.offset = file.tell()
            *lines, self._partial = data.split(b"\n")
            for line in lines:
                job_id, started, pid = line.decode().split()
                self.starts.setdefault(job_id, []).append((float(started), int(pid)))
        return self.starts


# ------------------------------------------------------------------------------------------------ the candidates


class Candidate:
    """One library on one broker: how the service's side enqueues, and how a worker process runs."""

    name = ""
    library = ""  # as the table shows it
    server = "none"
    embedded = False
    modules: tuple[str, ...] = ()  # what must import
    distributions: tuple[str, ...] = ()  # the installed size: these and their dependencies
    needs: str = ""  # "redis" or "postgres"

    def __init__(self, config: dict) -> None:
        self.config = config

    def missing(self) -> str | None:
        for module in self.modules:
            try:
                __import__(module)
            except ImportError as error:
                return f"not installed ({error.name}): {PIP}"
        return None

    def prepare(self) -> None:
        """Before a run: an empty queue."""

    def client(self) -> Callable[[str], None]:
        raise NotImplementedError

    def close_client(self) -> None:
        """After a run: the client's connections."""

    def work(self, kill_test: bool) -> None:
        """In the worker process: take messages until signalled."""
        raise NotImplementedError


def _redis_url(config: dict, name: str) -> str:
    return config["redis_url"].rsplit("/", 1)[0] + f"/{REDIS_DATABASES[name]}"


class HueySqlite(Candidate):
    name, library, embedded = "huey-sqlite", "Huey", True
    modules, distributions = ("huey",), ("huey",)

    def _queue(self):
        from preprocess_service.jobs.queue import JobQueue, make_huey

        return JobQueue(make_huey(self._broker_url(), Path(self.config["dir"])))

    def _broker_url(self) -> str:
        return ""

    def client(self) -> Callable[[str], None]:
        return self._queue().enqueue

    def work(self, kill_test: bool) -> None:
        queue = self._queue()
        queue.bind(record)
        # as deepfake-worker runs it (preprocess_service/jobs/worker.py)
        consumer = queue.huey.create_consumer(
            workers=1, worker_type="thread", periodic=False, graceful_signal="TERM", shutdown_timeout=1, max_delay=1.0
        )
        consumer.run()


class HueyRedis(HueySqlite):
    name, server, embedded = "huey-redis", "Redis", False
    modules, distributions, needs = ("huey", "redis"), ("huey", "redis"), "redis"

    def _broker_url(self) -> str:
        return _redis_url(self.config, self.name)

    def prepare(self) -> None:
        import redis

        redis.Redis.from_url(self._broker_url()).flushdb()


class HueyPostgres(HueySqlite):
    """Huey 3.5's PostgreSQL storage (LISTEN/NOTIFY, psycopg 3): not what the service configures
    (jobs/queue.py knows SQLite and Redis), measured because the cluster's database is PostgreSQL."""

    name, server, embedded = "huey-postgres", "PostgreSQL", False
    modules, distributions, needs = ("huey", "psycopg"), ("huey", "psycopg"), "postgres"

    def _queue(self):
        from huey import PostgresHuey

        from preprocess_service.jobs.queue import JobQueue

        return JobQueue(PostgresHuey(self.config["queue"], dsn=self.config["dsn"], results=False, read_timeout=1))


class Rq(Candidate):
    name, library, server = "rq", "RQ", "Redis"
    modules, distributions, needs = ("rq", "redis"), ("rq",), "redis"

    def _connection(self):
        import redis

        return redis.Redis.from_url(_redis_url(self.config, self.name))

    def prepare(self) -> None:
        self._connection().flushdb()

    def client(self) -> Callable[[str], None]:
        from rq import Queue, Retry

        queue = Queue(self.config["queue"], connection=self._connection())
        retry = Retry(max=1)  # a job abandoned by a dead worker is retried once, like DEEPFAKE_JOBS_MAX_ATTEMPTS=2

        def enqueue(job_id: str) -> None:
            queue.enqueue("benchmarks.queues.record", job_id, retry=retry, result_ttl=0)

        return enqueue

    def work(self, kill_test: bool) -> None:
        from rq import Queue, Worker

        connection = self._connection()
        settings = KILL_SETTINGS[self.name]["set"] if kill_test else {}
        # the default Worker: a forked work horse per job
        Worker([Queue(self.config["queue"], connection=connection)], connection=connection, **settings).work()


class Dramatiq(Candidate):
    name, library, server = "dramatiq", "Dramatiq", "Redis"
    modules, distributions, needs = ("dramatiq", "redis"), ("dramatiq[redis]",), "redis"
    _broker = None

    def _actor(self, kill_test: bool):
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        settings = KILL_SETTINGS[self.name]["set"] if kill_test else {}
        broker = RedisBroker(
            url=_redis_url(self.config, self.name),
            heartbeat_timeout=settings.get("heartbeat_timeout_ms", 60_000),
            maintenance_chance=settings.get("maintenance_chance", 1_000),
        )
        self._broker = broker
        # no retries on an exception, as the service's Huey task (a job's failure is its outcome)
        return broker, dramatiq.actor(
            record, actor_name="record", queue_name=self.config["queue"], broker=broker, max_retries=0
        )

    def prepare(self) -> None:
        import redis

        redis.Redis.from_url(_redis_url(self.config, self.name)).flushdb()

    def client(self) -> Callable[[str], None]:
        _, actor = self._actor(kill_test=False)
        return actor.send

    def close_client(self) -> None:
        if self._broker is not None:
            self._broker.close()

    def work(self, kill_test: bool) -> None:
        import dramatiq

        broker, _ = self._actor(kill_test)
        worker = dramatiq.Worker(broker, worker_threads=1)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        worker.start()
        stop.wait()
        worker.stop(timeout=2000)
        broker.close()


class Procrastinate(Candidate):
    name, library, server = "procrastinate", "Procrastinate", "PostgreSQL"
    modules, distributions, needs = ("procrastinate",), ("procrastinate",), "postgres"
    _app = None

    def _app_and_task(self):
        from procrastinate import App, PsycopgConnector

        app = App(connector=PsycopgConnector(conninfo=self.config["dsn"]))
        task = app.task(name="record", queue=self.config["queue"])(record)
        return app, task

    def prepare(self) -> None:
        import psycopg

        with psycopg.connect(self.config["dsn"], autocommit=True) as connection:
            present = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if present and present[0] is None:
            app, _ = self._app_and_task()
            with app.open():
                app.schema_manager.apply_schema()

    def client(self) -> Callable[[str], None]:
        app, task = self._app_and_task()
        self._app = app.open()

        def enqueue(job_id: str) -> None:
            task.defer(job_id=job_id)

        return enqueue

    def close_client(self) -> None:
        if self._app is not None:
            self._app.close()

    def work(self, kill_test: bool) -> None:
        import asyncio

        app, _ = self._app_and_task()
        settings = KILL_SETTINGS[self.name]["set"]
        options: dict = {"queues": [self.config["queue"]], "concurrency": 1}
        if kill_test:
            options |= {"update_heartbeat_interval": settings["update_heartbeat_interval"]}

        async def retry_stalled() -> None:  # the docs' retry_stalled_jobs, every 2 s
            while True:
                await asyncio.sleep(settings["retry_stalled_every_s"])
                stalled = await app.job_manager.get_stalled_jobs(
                    seconds_since_heartbeat=settings["seconds_since_heartbeat"]
                )
                for job in stalled:
                    await app.job_manager.retry_job(job)

        async def run() -> None:
            async with app.open_async():
                chore = asyncio.create_task(retry_stalled()) if kill_test else None
                await app.run_worker_async(**options)
                if chore:
                    chore.cancel()

        asyncio.run(run())


CANDIDATES: dict[str, type[Candidate]] = {
    c.name: c for c in (HueySqlite, HueyRedis, HueyPostgres, Rq, Dramatiq, Procrastinate)
}


# ------------------------------------------------------------------------------------------------ workers


class Workers:
    """Worker processes of one candidate, each in its own process group (a library's children too)."""

    def __init__(self, name: str, config: dict, log: Path, scratch: Path, sleep_s: float = 0.0) -> None:
        self.name, self.config, self.log, self.scratch, self.sleep_s = name, config, log, scratch, sleep_s
        self.processes: list[subprocess.Popen] = []

    def start(self, kill_test: bool = False) -> subprocess.Popen:
        output = self.scratch / f"worker-{self.name}-{len(self.processes)}-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, LOG_ENV: str(self.log), SLEEP_ENV: str(self.sleep_s), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", self.name]
        command += ["--config", json.dumps(self.config)] + (["--kill-test"] if kill_test else [])
        with output.open("ab") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process.output = output  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def output_tail(self) -> str:
        tails = []
        for process in self.processes:
            lines = process.output.read_text(errors="replace").splitlines()[-15:]  # type: ignore[attr-defined]
            tails.append("\n".join(lines))
        return "\n---\n".join(tails)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL to the worker and every process under it, as when its container dies (RQ's work
        horse puts itself in a process group of its own, so the group alone would leave it running)."""
        for pid in [*_descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self.kill(process)  # the group: a forked child left behind, too


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _job_id() -> str:
    return uuid.uuid4().hex


def _wait_for(records: Records, job_ids: list[str], timeout_s: float, workers: Workers, step_s: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout_s
    wanted = set(job_ids)
    while time.monotonic() < deadline:
        starts = records.poll()
        if wanted.issubset(starts):
            return True
        if workers.processes and all(p.poll() is not None for p in workers.processes):
            raise RuntimeError(f"{workers.name}: every worker exited\n{workers.output_tail()}")
        time.sleep(step_s)
    return False


# ------------------------------------------------------------------------------------------------ the runs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def throughput_run(
    cls: type[Candidate], base: dict, scratch: Path, count: int, processes: int
) -> tuple[list[float], dict]:
    """``count`` messages enqueued with no worker (each enqueue timed), then drained by ``processes``
    workers."""
    config = {
        **base,
        "queue": f"tp{processes}-{uuid.uuid4().hex[:6]}",
        "dir": str(scratch / f"{cls.name}-tp{processes}"),
    }
    candidate = cls(config)
    candidate.prepare()
    enqueue = candidate.client()
    job_ids = [_job_id() for _ in range(count)]
    costs = []
    for job_id in job_ids:
        started = time.perf_counter()
        enqueue(job_id)
        costs.append(time.perf_counter() - started)
    log = scratch / f"{cls.name}-tp{processes}.records"
    records, workers = Records(log), Workers(cls.name, config, log, scratch)
    try:
        for _ in range(processes):
            workers.start()
        done = _wait_for(records, job_ids, THROUGHPUT_CAP_S, workers, step_s=0.05)
    finally:
        workers.stop()
        candidate.close_client()
    starts = sorted(t for job_id in job_ids for t, _ in records.poll().get(job_id, [])[:1])
    low, high = int(0.05 * (len(starts) - 1)), int(0.95 * (len(starts) - 1))
    rate = (high - low) / (starts[high] - starts[low]) if high > low and starts[high] > starts[low] else None
    pids = {pid for job_id in job_ids for _, pid in records.starts.get(job_id, [])}
    return costs, {
        "tasks": count,
        "ran": len(starts),
        "complete": done,
        "tasks_per_s": rate,
        "worker_pids_seen": len(pids),
    }


def latency_run(cls: type[Candidate], base: dict, scratch: Path, count: int, idle_samples: int) -> dict:
    config = {**base, "queue": f"lat-{uuid.uuid4().hex[:6]}", "dir": str(scratch / f"{cls.name}-lat")}
    candidate = cls(config)
    candidate.prepare()
    enqueue = candidate.client()
    log = scratch / f"{cls.name}-lat.records"
    records, workers = Records(log), Workers(cls.name, config, log, scratch)
    try:
        workers.start()
        ready = False
        for _ in range(60):  # warm up: the worker has started and run one
            warm = _job_id()
            enqueue(warm)
            if _wait_for(records, [warm], 1.0, workers):
                ready = True
                break
        if not ready:
            raise RuntimeError(f"{cls.name}: the worker ran nothing in 60 s\n{workers.output_tail()}")

        def one() -> float | None:
            job_id = _job_id()
            sent = time.monotonic()
            enqueue(job_id)
            if not _wait_for(records, [job_id], 10.0, workers):
                return None
            return records.starts[job_id][0][0] - sent

        busy = []
        for _ in range(count):
            busy.append(one())
            time.sleep(random.uniform(0.0, LATENCY_GAP_S))
        idle = []
        for _ in range(idle_samples):
            time.sleep(random.uniform(*IDLE_S))  # random: a poller's phase must not be the same each time
            idle.append(one())
    finally:
        workers.stop()
        candidate.close_client()
    seen = [v for v in busy if v is not None]
    return {
        "tasks": count,
        "lost": count - len(seen),
        "p50_ms": 1000 * statistics.median(seen),
        "p95_ms": 1000 * _percentile(seen, 0.95),
        "max_ms": 1000 * max(seen),
        "after_idle_ms": [None if v is None else round(1000 * v, 1) for v in idle],
    }


def kill_run(cls: type[Candidate], base: dict, scratch: Path, wait_s: float) -> dict:
    """A 30 s task started, its worker's process group SIGKILLed, a replacement started at once."""
    config = {**base, "queue": f"kill-{uuid.uuid4().hex[:6]}", "dir": str(scratch / f"{cls.name}-kill")}
    candidate = cls(config)
    candidate.prepare()
    enqueue = candidate.client()
    log = scratch / f"{cls.name}-kill.records"
    records, workers = Records(log), Workers(cls.name, config, log, scratch, sleep_s=KILL_TASK_S)
    try:
        first = workers.start(kill_test=True)
        job_id = _job_id()
        enqueue(job_id)
        if not _wait_for(records, [job_id], 60.0, workers, step_s=0.05):
            return {"error": "the task never started", "output": workers.output_tail()}
        time.sleep(1.0)  # the task is running
        killed_at = time.monotonic()
        workers.kill(first)
        workers.start(kill_test=True)
        deadline = killed_at + wait_s
        while time.monotonic() < deadline:
            runs = records.poll()[job_id]
            if len(runs) > 1:
                return {"redelivered": True, "after_s": round(runs[1][0] - killed_at, 1), "waited_s": wait_s}
            time.sleep(0.1)
        return {"redelivered": False, "after_s": None, "waited_s": wait_s}
    finally:
        workers.stop()
        candidate.close_client()


# ------------------------------------------------------------------------------------------------ facts


def _closure(requirements: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions a requirement list pulls in (extras followed), itself included."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        key = distribution.metadata["Name"].lower().replace("_", "-")
        extras = set(requirement.extras)
        first = key not in seen
        seen[key] = distribution
        for text in distribution.requires or []:
            sub = Requirement(text)
            if sub.marker is None:
                wanted = first
            else:
                wanted = any(sub.marker.evaluate({"extra": e}) for e in extras) or (
                    first and sub.marker.evaluate({"extra": ""})
                )
            if wanted:
                pending.append(sub)
    return list(seen.values())


def installed_mb(requirements: tuple[str, ...]) -> tuple[float, list[str]]:
    total, names = 0, []
    for distribution in _closure(requirements):
        names.append(f"{distribution.metadata['Name']}=={distribution.version}")
        for file in distribution.files or []:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return round(total / 1e6, 1), sorted(names, key=str.lower)


def _server_version(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except OSError:
        return None


def _kill_cell(kill: dict | None) -> str:
    if not kill:
        return "–"
    if "error" in kill:
        return "error"
    if kill["redelivered"]:
        return f"re-run after {kill['after_s']:.0f} s"
    return f"lost (not re-run in {kill['waited_s']:.0f} s)"


def table(results: list[dict]) -> str:
    head = (
        "| queue | server | embedded | enqueue µs p50 | latency ms p50 / p95 | after 1.5-3.5 s idle, ms "
        "| tasks/s, 1 worker | tasks/s, 2 workers | worker SIGKILLed mid-task | installed MB |"
    )
    rows = [head, "|" + "---|" * 2 + "---|" + "---:|" * 5 + "---|---:|"]
    for r in results:
        embedded = "yes" if r["embedded"] else "no"
        if r.get("skipped"):
            rows.append(f"| {r['label']} | {r['server']} | {embedded} | skipped: {r['skipped']} |" + " |" * 6)
            continue
        lat, tp = r["latency"], r["throughput"]
        idle = " / ".join("–" if v is None else f"{v:.0f}" for v in lat["after_idle_ms"]) or "–"
        rate = ["–" if t["tasks_per_s"] is None else f"{t['tasks_per_s']:.0f}" for t in tp]
        cells = [r["label"], r["server"], embedded, f"{r['enqueue_us']['p50']:.0f}"]
        cells += [f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}", idle, rate[0], rate[1], _kill_cell(r.get("kill"))]
        rows.append("| " + " | ".join([*cells, str(r["installed_mb"])]) + " |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ main


def run_worker(name: str, config: dict, kill_test: bool) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    CANDIDATES[name](config).work(kill_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 messages per throughput run, 60 latency samples")
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="these candidates only")
    parser.add_argument("--kill-wait", type=float, default=80.0, help="seconds to wait for a killed worker's message")
    parser.add_argument("--no-kill", action="store_true", help="skip the worker-killed test")
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--kill-test", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, json.loads(args.config), args.kill_test)
        return

    from benchmarks.machine import machine_facts
    from deploy.local_servers import DatabaseStartError, start_postgres, start_redis

    count, latency_count, idle_samples = (500, 60, 1) if args.quick else (2000, 300, 3)
    names = args.only or list(CANDIDATES)
    candidates = {name: CANDIDATES[name] for name in names}
    missing = {name: cls({}).missing() for name, cls in candidates.items()}
    needs = {cls.needs for name, cls in candidates.items() if not missing[name]} - {""}
    scratch = Path(tempfile.mkdtemp(prefix="deepfake-queues-"))
    servers: dict = {}
    started, load_before = time.monotonic(), os.getloadavg()
    try:
        base: dict = {}
        for need, start in (("redis", start_redis), ("postgres", start_postgres)):
            if need in needs:
                try:
                    servers[need] = start()
                except DatabaseStartError as error:
                    for name, cls in candidates.items():
                        if cls.needs == need and not missing[name]:
                            missing[name] = f"{need} did not start: {str(error).splitlines()[0]}"
        if "redis" in servers:
            base["redis_url"] = servers["redis"].url
        if "postgres" in servers:
            pg = servers["postgres"]
            base["dsn"] = f"host=127.0.0.1 port={pg.port} user={pg.user} dbname={pg.database}"
        results: list[dict] = []
        for name, cls in candidates.items():
            entry: dict = {"name": name, "label": f"{cls.library} ({cls.server if cls.server != 'none' else 'SQLite'})"}
            entry |= {
                "server": cls.server if cls.server != "none" else "none (a SQLite file)",
                "embedded": cls.embedded,
            }
            if missing[name]:
                entry["skipped"] = missing[name]
                results.append(entry)
                print(f"{name}: skipped, {missing[name]}", flush=True)
                continue
            entry["versions"] = {d.split("[")[0]: metadata.version(d.split("[")[0]) for d in cls.distributions}
            entry["installed_mb"], entry["installed"] = installed_mb(cls.distributions)
            costs: list[float] = []
            entry["throughput"] = []
            for processes in (1, 2):
                run_costs, run = throughput_run(cls, base, scratch, count, processes)
                costs += run_costs
                entry["throughput"].append({"workers": processes, **run})
                print(
                    f"{name}: {processes} worker(s) {run['tasks_per_s'] or 0:.0f} tasks/s ({run['ran']}/{count})",
                    flush=True,
                )
            entry["enqueue_us"] = {
                "count": len(costs),
                "p50": 1e6 * statistics.median(costs),
                "p95": 1e6 * _percentile(costs, 0.95),
            }
            entry["latency"] = latency_run(cls, base, scratch, latency_count, idle_samples)
            print(
                f"{name}: enqueue {entry['enqueue_us']['p50']:.0f} µs, latency p50 {entry['latency']['p50_ms']:.1f} ms "
                f"p95 {entry['latency']['p95_ms']:.1f} ms, after idle {entry['latency']['after_idle_ms']}",
                flush=True,
            )
            results.append(entry)
        if not args.no_kill:
            runnable = [e for e in results if not e.get("skipped")]
            print(f"killing workers mid-task ({len(runnable)} at once, up to {args.kill_wait:.0f} s)...", flush=True)
            threads = []
            for entry in runnable:

                def kill(entry: dict = entry) -> None:
                    try:
                        entry["kill"] = kill_run(CANDIDATES[entry["name"]], base, scratch, args.kill_wait)
                    except Exception as error:  # one library's failure is its row, not the run's end
                        entry["kill"] = {"error": f"{type(error).__name__}: {error}"}
                    entry["kill"]["settings"] = KILL_SETTINGS[entry["name"]]

                threads.append(threading.Thread(target=kill))
                threads[-1].start()
            for thread in threads:
                thread.join()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    output = {
        "benchmark": "queues",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/queues.py" + (" --quick" if args.quick else ""),
        "machine": machine_facts()
        | {
            "redis_server": _server_version(["redis-server", "--version"]),
            "postgres": _postgres_version(),
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        },
        "method": {
            "throughput_tasks": count,
            "latency_tasks": latency_count,
            "latency_gap_s": [0.0, LATENCY_GAP_S],
            "throughput_run_cap_s": THROUGHPUT_CAP_S,
            "idle_samples": idle_samples,
            "idle_s": IDLE_S,
            "kill_task_s": KILL_TASK_S,
            "kill_wait_s": None if args.no_kill else args.kill_wait,
            "concurrency_per_worker": 1,
            "task": "appends (id, CLOCK_MONOTONIC start, pid) to a file; argument: one 32-hex job id",
        },
        "skipped": {r["name"]: r["skipped"] for r in results if r.get("skipped")},
        "results": results,
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    print(f"\n{output['wall_s']:.0f} s; wrote {args.output}")


def _postgres_version() -> str | None:
    try:
        from deploy.local_servers import postgres_binaries

        return _server_version([str(postgres_binaries()[1]), "--version"])
    except Exception:
        return None


if __name__ == "__main__":
    from benchmarks.queues import main as _main  # one module for the parent, its workers and their tasks

    _main()
