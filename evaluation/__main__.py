"""``deepfake-eval DIR`` — a checkpoint evaluated the way it is served; ``deepfake-eval compare A B``.

DIR holds REAL*/ and FAKE*/ folders (or is a CSV of path,label). Without ``--url`` the service is
started here, in-process, on the model repository given (the same app as ``deepfake-serve``, with
the same DEEPFAKE_* settings); with ``--url`` a running service is evaluated (embedded or Triton).
Every video is analyzed afresh (``?refresh=1``); ``--use-history`` accepts the service's cached
answers, which the report then counts and leaves out of its timings. ``--jobs`` sends the videos as
asynchronous jobs (``POST /jobs``) instead of one held request each: the same rows, for a large set
against a shared service.
Writes OUT/results.csv (one row per video, resumable), OUT/summary.json and OUT/report.html.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from evaluation.compare import compare, format_comparison
from evaluation.dataset import DatasetError, labelled_videos
from evaluation.jobs_runner import analyze_all_as_jobs
from evaluation.report import render
from evaluation.runner import RULES, ResultRow, analyze_all
from evaluation.summary import summarise
from evaluation.threshold import write_thresholds
from model_contract import backbone_model_name
from model_contract.repository_digests import LIST_NAME, digest_of_list, write_digest_list

EXIT_USAGE = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepfake-eval", description=__doc__)
    parser.add_argument("dataset", type=Path, help="folder with REAL*/ and FAKE*/ folders, or a CSV of path,label")
    parser.add_argument("--out", type=Path, default=Path("evaluation_out"), help="output folder (resumed if present)")
    parser.add_argument("--url", help="a running service (http://host:port); default: start one here")
    parser.add_argument("--api-key", help="X-API-Key for a service that needs one")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "int8"), help="backbone precision (in-process; default auto)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="videos in flight at once")
    parser.add_argument(
        "--jobs",
        action="store_true",
        help="send the videos as asynchronous jobs (POST /jobs), at most --max-pending unfinished at once, "
        "instead of holding a request per video; the rows are the same, each job's answer (with its timeline) "
        "is kept in OUT/jobs/",
    )
    parser.add_argument("--max-pending", type=int, default=20, help="with --jobs: unfinished jobs at once")
    parser.add_argument(
        "--use-history",
        action="store_true",
        help="accept the service's answers from its history for files it has already analyzed with this model "
        "(faster; those answers are counted and left out of the timings); default: analyze every video afresh",
    )
    parser.add_argument(
        "--threshold-mode",
        choices=("balanced_accuracy", "fpr"),
        default="balanced_accuracy",
        help="how the threshold reported beside 0.5 is chosen on this set",
    )
    parser.add_argument("--target-fpr", type=float, default=0.05, help="for --threshold-mode fpr")
    parser.add_argument(
        "--write-threshold",
        action="store_true",
        help="record the chosen thresholds in the model repository's config (the service then uses them)",
    )
    return parser.parse_args(argv)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    )


def evaluate(args: argparse.Namespace) -> int:
    try:
        videos = labelled_videos(args.dataset)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from evaluation.local_service import local_service
            from preprocess_service.settings import Settings

            overrides: dict = {"model_repository": args.model_repository, "max_in_flight": max(8, args.concurrency)}
            if args.jobs:  # the in-process service runs the jobs itself; their videos wait beside the results
                overrides["jobs_dir"] = args.out / "service-jobs"
            if args.precision:
                overrides["precision"] = args.precision
            url = stack.enter_context(local_service(Settings(**overrides)))
        url = url.rstrip("/")
        headers = {"X-API-Key": args.api_key} if args.api_key else {}
        ready = httpx.get(url + "/readyz", headers=headers, timeout=120)
        if ready.status_code != 200:
            print(f"error: the service is not ready ({ready.status_code}): {ready.text[:300]}", file=sys.stderr)
            return 1
        model = ready.json()["model"]
        with _progress() as progress:
            task = progress.add_task("analyzing as jobs" if args.jobs else "analyzing", total=len(videos))
            progress.update(task, completed=0)

            def advance(row: ResultRow) -> None:
                progress.advance(task)

            results_csv, refresh = args.out / "results.csv", not args.use_history
            if args.jobs:
                rows = analyze_all_as_jobs(
                    url, videos, results_csv, args.api_key, args.max_pending, on_row=advance, refresh=refresh
                )
            else:
                rows = asyncio.run(
                    analyze_all(url, videos, results_csv, args.concurrency, args.api_key, advance, refresh)
                )
            progress.update(task, completed=len(videos))
    summary = summarise(rows, model, args.threshold_mode, args.target_fpr)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "report.html").write_text(render(summary))
    print(_headline(summary))
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'summary.json'}, {args.out / 'report.html'}")
    if args.write_threshold:
        chosen = {rule: summary["rules"][rule]["threshold"] for rule in RULES}
        if not all(chosen.values()):
            print("error: no threshold to write (the set needs both FAKE and REAL videos)", file=sys.stderr)
            return 1
        model_dir = args.model_repository / backbone_model_name(model.get("precision", "fp32"))
        written = write_thresholds(model_dir, {rule: entry["value"] for rule, entry in chosen.items()})
        print(f"thresholds recorded in {', '.join(map(str, written))}; restart the service (or Triton) to apply")
        if (args.model_repository / LIST_NAME).exists():  # the configs changed: so must the list a cluster pins
            listed = write_digest_list(args.model_repository)
            print(
                f"rewrote {listed}, sha256 {digest_of_list(listed)}: pin it again (MODEL_REPOSITORY_SHA256SUMS_DIGEST)"
            )
    return 0


def _headline(summary: dict) -> str:
    lines = []
    if summary["untrained_demo"]:
        lines.append("UNTRAINED DEMO MODEL: these numbers say nothing about deepfakes")
    errors = ", ".join(f"{code} {count}" for code, count in summary["errors"].items()) or "none"
    lines.append(f"{summary['analyzed']} of {summary['videos']} videos analyzed; errors: {errors}")
    if summary["cached"]:
        lines.append(
            f"{summary['cached']} of {summary['analyzed']} answers came from the service's history and "
            f"{'is' if summary['cached'] == 1 else 'are'} left out of the timings"
        )
    for rule in RULES:
        entry = summary["rules"][rule]
        served = entry["served"]
        auc = f"{entry['auc']:.3f}" if entry["auc"] is not None else "n/a"
        threshold = f", chosen threshold {entry['threshold']['value']:.4f}" if entry["threshold"] else ""
        lines.append(
            f"{rule:<9} accuracy {served['accuracy']:.3f}  balanced {served['balanced_accuracy']:.3f}  AUC {auc}"
            f"{threshold}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        parser = argparse.ArgumentParser(prog="deepfake-eval compare", description="B against A, metric by metric")
        parser.add_argument("a", type=Path)
        parser.add_argument("b", type=Path)
        parser.add_argument("--out", type=Path, help="also write the comparison as JSON here")
        args = parser.parse_args(argv[1:])
        result = compare(args.a, args.b)
        print(format_comparison(result))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
