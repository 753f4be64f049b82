"""The history at 10,000 stored analyses: bytes per analysis, listing time and memory (summary
columns, as the service lists now, beside whole rows, as it listed before), and purge time; on
SQLite and on a real PostgreSQL (started here from Debian's package, as the tests start it).

    python benchmarks/history_store.py [--rows 10000] [--owners 10] [--no-postgres]

Every stored answer is a real /predict/ answer of a seed video (benchmarks/data/answer_seed.json,
30 frames, receipt and all), given its own id and SHA-256. Each listing mode runs in a fresh child
process, so its peak RSS is its own. Prints a table, writes benchmarks/results/history_store.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from benchmarks.machine import machine_facts  # noqa: E402
from preprocess_service.history.models import AnalysisRecord  # noqa: E402
from preprocess_service.history.store import HistoryStore  # noqa: E402

SAMPLE = ROOT / "benchmarks" / "data" / "answer_seed.json"
RESULT = ROOT / "benchmarks" / "results" / "history_store.json"
LISTING_REPEATS = 25


def _record(answer: dict, owner: str, created_at: datetime) -> AnalysisRecord:
    sha256 = uuid.uuid4().hex * 2
    verdict = answer["verdicts"][answer["verdict_rule"]]
    return AnalysisRecord(
        id=uuid.uuid4().hex,
        owner=owner,
        created_at=created_at,
        filename=answer["filename"],
        size=answer["metadata"]["file_size"],
        sha256=sha256,
        model_key="k" * 64,
        checkpoint_sha256=answer["model"]["checkpoint_sha256"],
        precision=answer["model"]["precision"],
        untrained_demo=answer["model"]["untrained_demo"],
        rule=answer["verdict_rule"],
        result=verdict["result"],
        p_fake=verdict["p_fake"],
        total_s=answer["processing_time_sec"],
        answer={**answer, "sha256_hex": sha256},
    )


def fill(store: HistoryStore, rows: int, owners: int) -> float:
    answer = json.loads(SAMPLE.read_text())
    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, rows, 500):
        batch = [
            _record(answer, f"owner{i % owners}", now - timedelta(seconds=i))
            for i in range(start, min(rows, start + 500))
        ]
        with Session(store.engine) as session, session.begin():
            session.add_all(batch)
    return time.perf_counter() - started


def stored_bytes(store: HistoryStore) -> int:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            return int(connection.execute(text("SELECT pg_total_relation_size('analyses')")).scalar() or 0)
        pages = connection.execute(text("PRAGMA page_count")).scalar() or 0
        size = connection.execute(text("PRAGMA page_size")).scalar() or 0
        return int(pages) * int(size)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(url: str, mode: str, owner: str | None) -> dict:
    """One listing mode in this (fresh) process: median time of page 1 and a deep page, peak RSS."""
    store = HistoryStore(url)
    store.page(owner, per_page=1)  # connect, warm the imports, before the baseline
    baseline = _rss_kib("VmRSS")

    def whole_rows(page: int) -> int:  # what the service did before: whole records, answers included
        conditions = [] if owner is None else [AnalysisRecord.owner == owner]
        with Session(store.engine) as session:
            session.scalar(select(func.count()).select_from(AnalysisRecord).where(*conditions))
            items = session.scalars(
                select(AnalysisRecord)
                .where(*conditions)
                .order_by(AnalysisRecord.created_at.desc(), AnalysisRecord.id)
                .offset((page - 1) * 10)
                .limit(10)
            ).all()
        return len(items)

    def summaries(page: int) -> int:
        return len(store.page(owner, page=page, per_page=10).items)

    listing = summaries if mode == "summary" else whole_rows
    timings: dict[str, float] = {}
    for name, page in (("page_1_ms", 1), ("page_50_ms", 50)):
        samples = []
        for _ in range(LISTING_REPEATS):
            started = time.perf_counter()
            assert listing(page) == 10
            samples.append((time.perf_counter() - started) * 1000)
        timings[name] = round(statistics.median(samples), 2)
    store.close()
    return {**timings, "rss_growth_mib": round((_rss_kib("VmHWM") - baseline) / 1024, 1)}


def purge_times(store: HistoryStore, rows: int, owners: int) -> dict:
    """The oldest quarter by age (rows are one second apart), then each owner down to half its rows."""
    started = time.perf_counter()
    by_age = len(store.purge(datetime.now(UTC), timedelta(seconds=rows * 0.75), None))
    age_s = time.perf_counter() - started
    started = time.perf_counter()
    by_rows = len(store.purge(datetime.now(UTC), None, rows // owners // 2))
    rows_s = time.perf_counter() - started
    return {
        "purge_rows_per_owner": {"erased": by_rows, "seconds": round(rows_s, 3)},
        "purge_by_age": {"erased": by_age, "seconds": round(age_s, 3)},
    }


def measure(url: str, database: str, rows: int, owners: int) -> dict:
    store = HistoryStore(url)
    store.migrate()
    fill_s = fill(store, rows, owners)
    size = stored_bytes(store)
    listings = {}
    for mode in ("summary", "whole_rows"):
        for view, owner in (("owner", "owner0"), ("operator", None)):
            output = subprocess.run(
                [sys.executable, __file__, "--child", url, mode, owner or ""],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            listings[f"{mode}/{view}"] = json.loads(output.strip().splitlines()[-1])
    purge = purge_times(store, rows, owners)
    store.close()
    return {
        "database": database,
        "rows": rows,
        "owners": owners,
        "fill_s": round(fill_s, 2),
        "bytes_per_analysis": round(size / rows),
        "listings": listings,
        **purge,
    }


def table(results: list[dict]) -> str:
    """One row per database and view: summary columns (now) beside whole rows (before)."""
    lines = [
        "| database | bytes per analysis | view | list 10, page 1 / page 50: summary columns "
        "| whole rows (before) | peak RSS growth: summary / whole | purge by rows per owner | purge by age |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        by_rows, by_age = result["purge_rows_per_owner"], result["purge_by_age"]
        for view in ("owner", "operator"):
            summary, whole = result["listings"][f"summary/{view}"], result["listings"][f"whole_rows/{view}"]
            lines.append(
                f"| {result['database']} | {result['bytes_per_analysis']:,} | {view} "
                f"| {summary['page_1_ms']} / {summary['page_50_ms']} ms "
                f"| {whole['page_1_ms']} / {whole['page_50_ms']} ms "
                f"| {summary['rss_growth_mib']} / {whole['rss_growth_mib']} MiB "
                f"| {by_rows['erased']:,} rows in {by_rows['seconds']} s "
                f"| {by_age['erased']:,} rows in {by_age['seconds']} s |"
            )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--table":  # the README's table from a results file
        print(table(json.loads(Path(sys.argv[2]).read_text())["results"]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4] or None)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=10)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(measure(f"sqlite:///{folder}/history.sqlite3", "SQLite", args.rows, args.owners))
    if not args.no_postgres:
        from deploy.local_servers import start_postgres

        server = start_postgres()
        try:
            results.append(measure(server.url, "PostgreSQL", args.rows, args.owners))
        finally:
            server.stop()
    report = {"benchmark": "history_store", "machine": machine_facts(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
