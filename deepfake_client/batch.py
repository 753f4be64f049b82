"""A batch of files as jobs, resumable: what ``deepfake-client jobs submit`` runs.

Each file is submitted as a job (``POST /jobs``), at most ``max_pending`` unfinished at a time, so that
the service's cap on a caller's unfinished jobs (``DEEPFAKE_JOBS_MAX_UNFINISHED_PER_OWNER``, 100) is
never what holds the batch back. The unfinished are polled gently, since every call counts against
the caller's rate (120 a minute by default): one listing per round (``GET /jobs``, newest first, 200
at most: where every recent job stands, in one request), every ``poll_s``; a job the listing shows
finished, or does not show, is then fetched once (``GET /jobs/{id}``) and its whole answer written to
``OUT/NAME.job.json``.

The state file (JSON, replaced whole after every change, so an interrupt leaves the old state or the
new, never half of one) records each file: its absolute path, SHA-256, size, job id, state and answer
file. Run again with the same state file, and

- a file whose job finished (its answer saved) is skipped, unless its SHA-256 changed: then it is
  submitted again;
- a file submitted but not finished is polled again, not submitted again: the job went on on the
  service while the client was away;
- a job the service answers 404 for (erased, past its retention, or the state file is another
  service's) is submitted again, and so is a file the service refused at upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deepfake_client.api import FINAL_JOB_STATES, DeepfakeClient, ServiceError

STATE_VERSION = 1
LISTING = 200  # the most GET /jobs gives in one page: the recent jobs, in one request per round
REFUSED = "refused"  # the upload itself was refused: there is no job
# Refusals that are not about the file but about the batch (no key, no jobs on this service, over
# the caller's rate or cap even after the retries, a webhook URL refused): every file would meet
# them, so the batch stops there (its state saved) instead of uploading each file to be refused.
BATCH_STATUSES = frozenset({401, 403, 404, 405, 429})


class StateFileError(Exception):
    """The state file is not one this client wrote: nothing was submitted."""


@dataclass
class Entry:
    """One file of the batch, as the state file records it (``progress`` is kept in memory only)."""

    path: str  # absolute
    sha256: str
    size: int
    answer: str  # the answer's file name in the output folder, NAME.job.json
    job_id: str | None = None
    state: str | None = None  # None: to submit; queued, running; done, failed, cancelled; refused
    error: dict | None = None  # a failed job's {"code", "message"}, or the refusal's (with "status")
    result: str | None = None  # once done: FAKE or REAL, P(FAKE), how many stretches the timeline flags
    p_fake: float | None = None
    flagged: int | None = None
    untrained_demo: bool = False
    progress: float = field(default=0.0, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_JOB_STATES or self.state == REFUSED

    def record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("progress")
        return record

    def restart(self) -> None:
        """Back to "to submit": the job is gone, or the file changed."""
        self.job_id = self.state = self.error = self.result = self.p_fake = self.flagged = None
        self.untrained_demo, self.progress = False, 0.0


def sha256_and_size(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_atomically(path: Path, text: str) -> None:
    """Written whole to a temporary file beside ``path``, then renamed over it: a reader (or a run
    resumed after a crash) finds the old contents or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read_state(path: Path) -> dict[str, Entry]:
    """The state file's entries by absolute path; none where it does not exist yet."""
    if not path.exists():
        return {}
    problem = f"{path} is not a deepfake-client jobs state file"
    try:
        document = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise StateFileError(problem) from error
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise StateFileError(f"{problem} (version {STATE_VERSION})")
    known = {f.name for f in fields(Entry)}
    entries: dict[str, Entry] = {}
    for record in document.get("files", []):
        try:
            entry = Entry(**{k: v for k, v in record.items() if k in known})
        except (TypeError, AttributeError) as error:
            raise StateFileError(problem) from error
        if not all(isinstance(v, str) for v in (entry.path, entry.sha256, entry.answer)):
            raise StateFileError(problem)
        entries[entry.path] = entry
    return entries


def _answer_name(path: Path, taken: set[str]) -> str:
    """``video.job.json`` for ``video.mp4``; the whole name where that is taken (``video.mov.job.json``),
    then ``-2``, ``-3``...: same-named files of different folders never overwrite each other's answer."""
    for base in (path.stem or path.name, path.name):
        if f"{base}.job.json" not in taken:
            return f"{base}.job.json"
    n = 2
    while f"{path.stem}-{n}.job.json" in taken:
        n += 1
    return f"{path.stem}-{n}.job.json"


def as_dict(value: object) -> dict:
    """What the service sent where an object is expected, or an empty one: its answers are read, not trusted."""
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Batch:
    """``files`` as jobs, their answers written to ``out``, the state kept in ``state_file``.

    ``Batch(...)`` hashes the files and reads the state file (nothing is sent yet); ``run()`` submits,
    polls and saves until every file's job is finished. ``on_event(event, entry)`` is told of each
    step: ``submitted``, ``refused``, ``finished``, ``lost`` (the service answered 404: submitted
    again), and ``polled`` (entry None) after every round. An exception it raises, KeyboardInterrupt
    included, stops the batch with its state saved."""

    def __init__(
        self,
        client: DeepfakeClient,
        files: Iterable[Path],
        out: Path,
        state_file: Path,
        max_pending: int = 20,
        poll_s: float = 2.0,
        webhook_url: str | None = None,
        refresh: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_pending < 1 or poll_s <= 0:
            raise ValueError("max_pending must be at least 1 and poll_s above 0")
        self.client, self.out, self.state_file = client, Path(out), Path(state_file)
        self.max_pending, self.poll_s, self.webhook_url, self.refresh = max_pending, poll_s, webhook_url, refresh
        self._sleep = sleep
        self._known = _read_state(self.state_file)  # every file it records, this batch's or not
        self.entries: dict[Path, Entry] = {}  # this batch's, by the path as given
        taken = {entry.answer for entry in self._known.values()}
        seen: set[str] = set()
        for path in files:
            absolute = os.path.abspath(path)
            if absolute in seen:
                continue  # the same file named twice
            seen.add(absolute)
            sha256, size = sha256_and_size(Path(path))
            entry = self._known.get(absolute)
            if entry is None:
                entry = Entry(absolute, sha256, size, _answer_name(Path(path), taken))
                taken.add(entry.answer)
                self._known[absolute] = entry
            elif entry.sha256 != sha256 or entry.state == REFUSED:
                entry.restart()  # changed since, or refused: submitted again (its answer file reused)
                entry.sha256, entry.size = sha256, size
            self.entries[Path(path)] = entry
        # submitted and not finished, or finished but its answer not saved (here): polled or fetched again
        self.pending = [e for e in self.entries.values() if e.job_id and not (e.finished and self._saved(e))]
        self.queue = [e for e in self.entries.values() if not e.job_id]
        self.skipped = len(self.entries) - len(self.pending) - len(self.queue)  # finished before, answers saved
        self._on_event: Callable[[str, Entry | None], None] = lambda event, entry: None

    def answer_path(self, entry: Entry) -> Path:
        return self.out / entry.answer

    def _saved(self, entry: Entry) -> bool:
        return self.answer_path(entry).is_file()

    def completed(self) -> float:
        """Files finished, plus the progress of the unfinished: what a progress bar shows."""
        pending = {id(entry) for entry in self.pending}
        return sum(entry.progress if id(entry) in pending else entry.finished for entry in self.entries.values())

    def save(self) -> None:
        document = {
            "version": STATE_VERSION,
            "service": self.client.url,
            "files": [entry.record() for entry in self._known.values()],
        }
        write_atomically(self.state_file, json.dumps(document, indent=2) + "\n")

    def run(self, on_event: Callable[[str, Entry | None], None] | None = None) -> dict[Path, Entry]:
        """Until every file's job is finished (or refused); each file's entry, by the path as given."""
        if on_event is not None:
            self._on_event = on_event
        try:
            self.save()  # before any upload: a state file that cannot be written costs nothing
            if self.pending:
                self._poll()  # resumed: what finished while the client was away, before submitting more
            while True:
                while self.queue and len(self.pending) < self.max_pending:
                    self._submit(self.queue[0])
                if not self.pending:
                    return self.entries
                self._sleep(self.poll_s)
                self._poll()
        except KeyboardInterrupt:
            self.save()  # saved after every change already; once more, for whatever was in between
            raise

    def _submit(self, entry: Entry) -> None:
        """The first file of the queue; it leaves the queue once the service has answered for it."""
        try:
            accepted = self.client.submit_job(Path(entry.path), self.webhook_url, self.refresh)
        except ServiceError as error:
            if error.status in BATCH_STATUSES or error.status >= 500 or error.code.startswith("webhook_"):
                raise
            self.queue.remove(entry)
            entry.state, entry.error = REFUSED, {"code": error.code, "message": error.message, "status": error.status}
            self.save()
            self._on_event("refused", entry)
            return
        self.queue.remove(entry)
        entry.restart()
        entry.job_id, entry.state = str(accepted["id"]), str(accepted.get("state", "queued"))
        self.pending.append(entry)
        self.save()
        self._on_event("submitted", entry)

    def _poll(self) -> None:
        """One listing, then each job it shows finished (or does not show) fetched."""
        listing = self.client.jobs(page=1, per_page=LISTING)
        items = listing.get("items") if isinstance(listing, dict) else None
        shown = {item.get("id"): item for item in items or [] if isinstance(item, dict)}
        changed = False
        for entry in list(self.pending):
            view = shown.get(entry.job_id)
            if view is None or view.get("state") in FINAL_JOB_STATES:
                try:
                    view = self.client.job(str(entry.job_id))
                except ServiceError as error:
                    if error.status != 404:
                        raise
                    self._lost(entry)
                    continue
            if view.get("state") in FINAL_JOB_STATES:
                self._finish(entry, view)
                continue
            entry.progress = _number(view.get("progress")) or 0.0
            if view.get("state") != entry.state and isinstance(view.get("state"), str):
                entry.state, changed = view["state"], True
        if changed:
            self.save()
        self._on_event("polled", None)

    def _lost(self, entry: Entry) -> None:
        self.pending.remove(entry)
        entry.restart()
        self.queue.insert(0, entry)
        self.save()
        self._on_event("lost", entry)

    def _finish(self, entry: Entry, view: dict) -> None:
        write_atomically(self.answer_path(entry), json.dumps(view, indent=2) + "\n")
        result = as_dict(view.get("result"))
        flagged = as_dict(result.get("timeline")).get("flagged")
        entry.state, entry.progress = view["state"], 1.0
        entry.error = as_dict(view.get("error")) or None
        entry.result = result.get("result") if isinstance(result.get("result"), str) else None
        entry.p_fake = _number(result.get("p_fake"))
        entry.flagged = len(flagged) if isinstance(flagged, list) else None
        entry.untrained_demo = as_dict(result.get("model")).get("untrained_demo") is True
        self.pending.remove(entry)
        self.save()
        self._on_event("finished", entry)
