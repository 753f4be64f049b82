"""``deepfake-client``: the service from a terminal (replaces the original's usage_example.py).

    deepfake-client predict a.mp4 b.mov videos/ [--json] [--concurrency 4] [--refresh]
                            [--save-receipts DIR] [--all-files]
    deepfake-client csv a.mp4 [--out a.csv]
    deepfake-client sign a.mp4 [--out a.attestation.jws]
    deepfake-client verify a.mp4 ATTESTATION [--offline] [--public-key key.pem]   (or a deprecated SIGNATURE_BASE64)
    deepfake-client receipt verify a.mp4 RECEIPT [--answer ANSWER] [--public-key key.pem]
    deepfake-client keys save [--out FILE]
    deepfake-client history [--verdict FAKE] [--sha256 HEX] [--checkpoint HEX] [--precision fp32]
                            [--page 1] [--per-page 20] [--json]
    deepfake-client jobs submit DIR|CSV|FILES... [--out deepfake-jobs] [--state FILE] [--max-pending 20]
                            [--poll 2] [--webhook-url URL] [--refresh] [--all-files] [--json]
    deepfake-client jobs status ID [--json]
    deepfake-client jobs list [--state running] [--page 1] [--per-page 20] [--json]
    deepfake-client jobs cancel ID

``--url`` (or DEEPFAKE_URL, default http://127.0.0.1:8080), ``--api-key`` (or DEEPFAKE_API_KEY) and
``--keys`` (or DEEPFAKE_CLIENT_KEYS, default ``~/.config/deepfake-client/keys.json``: the public keys
pinned on first use, key id -> PEM). Exit status: 0 done (and valid, for the checks), 1 invalid or
refused (a job failed or cancelled among them), 2 usage, 130 interrupted (``jobs submit``: the same
command again resumes it from its state file; docs/jobs.md, "Batches from a terminal"). A check's
verdict is one JSON line on standard output; a refusal or a problem with what was given is one
``error:`` line on standard error, never a traceback; a note (what was saved, skipped or fetched) is
one line on standard error, so standard output stays what it was.

Strings the service stored (file names, codes, messages) are printed as plain text: control
characters are dropped and rich markup is shown, not interpreted, so a file name cannot move the
cursor, retitle the terminal or restyle the table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from deepfake_client.api import (
    DEFAULT_URL,
    FINAL_JOB_STATES,
    AttestationCheck,
    DeepfakeClient,
    KeyStoreError,
    ReceiptCheck,
    ServiceError,
    check_attestation,
    check_receipt,
    default_key_store,
    is_attestation,
    pin_keys,
    public_key_id,
    read_key_store,
)
from deepfake_client.batch import Batch, Entry, StateFileError, as_dict
from model_contract.receipts import MALFORMED, receipt_header

console = Console()
if not console.is_terminal:  # piped or captured: rich would assume 80 columns and wrap the tables
    console = Console(width=200)


# C0 controls (ESC among them), DEL, C1 controls (0x9B is a one-byte CSI to many terminals), and the
# Unicode Bidi_Control characters, which reorder what is shown (a name that reads as another).
_UNPRINTABLE = dict.fromkeys(
    [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


# What the service takes (MP4/QuickTime, Matroska/WebM, AVI, MPEG-TS), by suffix: a folder or a shell
# glob brings notes, thumbnails and .DS_Store along, and uploading them only to be refused helps nobody.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".m2ts")
PATH_SUFFIXES = (".json", ".jws", ".txt")  # what a receipt argument that is a path ends with, if not a file
HEX = re.compile(r"[0-9a-fA-F]{13,}")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
CSV_HEADERS = ("path", "video", "file")  # a CSV's first row naming one of these is its header
SHOWN_NAMES = 10  # a note lists at most this many file names, then "and N more"


Check = TypeVar("Check", ReceiptCheck, AttestationCheck)


class InputProblem(Exception):
    """Something the user gave (a key file, a receipt file, an answer) is not what it should be."""


def plain(value: object) -> str:
    """``value`` as a string with every control character dropped: safe to write to a terminal."""
    return "" if value is None else str(value).translate(_UNPRINTABLE)


def printable(value: object, style: str = "") -> Text:
    """A stored string for a table cell: control characters dropped, and a ``Text`` (never markup),
    so ``[bold]`` in a file name is shown as written."""
    return Text(plain(value), style=style)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DEEPFAKE_URL", DEFAULT_URL))
    parser.add_argument("--api-key", default=os.environ.get("DEEPFAKE_API_KEY"))
    keys_help = "the pinned public keys (default: DEEPFAKE_CLIENT_KEYS, else ~/.config/deepfake-client/keys.json)"
    parser.add_argument("--keys", type=Path, help=keys_help)
    # --keys may come after the command too: SUPPRESS leaves the global one alone where it does not
    keys_option = argparse.ArgumentParser(add_help=False)
    keys_option.add_argument("--keys", type=Path, default=argparse.SUPPRESS, help=keys_help)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", parents=[keys_option], help="verdicts for files or folders, concurrently")
    predict.add_argument("files", nargs="+", type=Path, help="video files, or folders: their files (not recursive)")
    predict.add_argument("--json", action="store_true", help="the full answers as JSON, {path: answer}")
    predict.add_argument("--concurrency", type=int, default=4)
    predict.add_argument("--refresh", action="store_true", help="analyze again even if the history has it")
    predict.add_argument(
        "--save-receipts",
        type=Path,
        metavar="DIR",
        help="write each answer (NAME.answer.json) and its receipt (NAME.receipt.jws) here, and pin the public keys",
    )
    predict.add_argument(
        "--all-files", action="store_true", help=f"send every file, not only {' '.join(VIDEO_SUFFIXES)}"
    )
    csv_command = commands.add_parser("csv", help="per-frame scores as CSV")
    csv_command.add_argument("file", type=Path)
    csv_command.add_argument("--out", type=Path, help="write here instead of standard output")
    sign = commands.add_parser("sign", help="a timestamped attestation of the file's SHA-256 (a JWS)")
    sign.add_argument("file", type=Path)
    sign.add_argument("--out", type=Path, help="also write the attestation here (e.g. NAME.attestation.jws)")
    verify = commands.add_parser("verify", parents=[keys_option], help="check an attestation against the file")
    verify.add_argument("file", type=Path)
    verify.add_argument(
        "signature",
        help="the attestation sign gave, (@)path to a file holding it (sign --out's), or a deprecated signature_base64",
    )
    verify.add_argument(
        "--offline", action="store_true", help="check an attestation here with the pinned keys, not by the service"
    )
    verify.add_argument(
        "--public-key", type=Path, action="append", help="PEM file(s) instead of the pinned keys (implies --offline)"
    )
    receipt = commands.add_parser("receipt", help="analysis receipts")
    receipt_commands = receipt.add_subparsers(dest="receipt_command", required=True)
    check = receipt_commands.add_parser(
        "verify", parents=[keys_option], help="check a receipt offline against the file, with the pinned keys"
    )
    check.add_argument("file", type=Path)
    check.add_argument(
        "receipt",
        help="the receipt itself, @path to a file holding it (NAME.receipt.jws), or an answer's JSON (its receipt "
        "and per-frame scores: NAME.answer.json, or predict --json's output)",
    )
    check.add_argument(
        "--public-key", type=Path, action="append", help="PEM file(s) instead of the pinned keys: no request"
    )
    check.add_argument(
        "--answer",
        type=Path,
        help="the answer's JSON (NAME.answer.json, or predict --json's output: FILE's entry): its per-frame scores "
        "are checked too",
    )
    keys = commands.add_parser("keys", help="the service's public keys, pinned for offline checks")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    save = keys_commands.add_parser("save", parents=[keys_option], help="fetch the public keys and pin them")
    save.add_argument("--out", type=Path, help="the key store to write (default: --keys's)")
    history = commands.add_parser("history", help="past analyses, newest first")
    history.add_argument("--verdict", choices=("FAKE", "REAL"))
    history.add_argument("--sha256")
    history.add_argument(
        "--checkpoint",
        metavar="HEX",
        help="only this model's: its checkpoint SHA-256 or a prefix of it, e.g. the 12 characters the model "
        "column shows (an answer's model.checkpoint_sha256)",
    )
    history.add_argument("--precision", choices=("fp32", "bf16", "int8"), help="only answers at this precision")
    history.add_argument("--page", type=int, default=1)
    history.add_argument("--per-page", type=int, default=20)
    history.add_argument("--json", action="store_true")
    _jobs_parser(commands)
    return parser


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return number


def _jobs_parser(commands: argparse._SubParsersAction) -> None:
    jobs = commands.add_parser("jobs", help="asynchronous jobs: a batch with progress and resume, one job, the list")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    submit = jobs_commands.add_parser(
        "submit", help="files as jobs, their answers saved; the same command again resumes an interrupted batch"
    )
    submit.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="video files, folders (their files, not recursive), or CSV files of paths (a path column, or the "
        "first column; relative to the CSV's folder)",
    )
    submit.add_argument(
        "--out", type=Path, default=Path("deepfake-jobs"), help="where each job's answer goes (default: %(default)s)"
    )
    submit.add_argument("--state", type=Path, help="the state file that resumes the batch (default: OUT/state.json)")
    submit.add_argument(
        "--max-pending", type=_at_least_one, default=20, help="unfinished jobs at most at a time (default: %(default)s)"
    )
    submit.add_argument(
        "--poll",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="between polls, each one request against the caller's rate (default: %(default)s)",
    )
    submit.add_argument("--webhook-url", help="where each job's outcome is POSTed, signed (docs/jobs.md)")
    submit.add_argument("--refresh", action="store_true", help="analyze again even if the history has it")
    submit.add_argument(
        "--all-files", action="store_true", help=f"send every file, not only {' '.join(VIDEO_SUFFIXES)}"
    )
    submit.add_argument("--json", action="store_true", help="each file's outcome as JSON, {path: outcome}")
    status = jobs_commands.add_parser("status", help="one job: its state, progress, and once done its result")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="the job as the service answers it")
    listing = jobs_commands.add_parser("list", help="this caller's jobs, newest first, without their results")
    listing.add_argument("--state", choices=JOB_STATES)
    listing.add_argument("--page", type=_at_least_one, default=1)
    listing.add_argument("--per-page", type=_at_least_one, default=20)
    listing.add_argument("--json", action="store_true")
    cancel = jobs_commands.add_parser(
        "cancel", help="cancel a queued or running job; a finished one is erased, its result with it"
    )
    cancel.add_argument("id")


def _note(message: str) -> None:
    """One line on standard error, beside whatever the command prints on standard output."""
    print(plain(message), file=sys.stderr)


def _count(n: int, thing: str) -> str:
    """``1 file``, ``2 files``: a note reads as a sentence."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _names(paths: list[Path]) -> str:
    """File names for a note: the first few, then how many more."""
    shown = ", ".join(plain(path.name) for path in paths[:SHOWN_NAMES])
    return shown + (f" and {len(paths) - SHOWN_NAMES} more" if len(paths) > SHOWN_NAMES else "")


def _key_store(args: argparse.Namespace) -> Path:
    return args.keys if args.keys is not None else default_key_store()


def _videos(given: list[Path], all_files: bool) -> list[Path]:
    """The files to send: folders expanded to their files; without ``all_files`` only video suffixes,
    and the others named in one note (a folder or a glob brings them along, a user never meant them)."""
    files: list[Path] = []
    for path in given:
        files.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    if all_files:
        return files
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    skipped = [path for path in files if path.suffix.lower() not in VIDEO_SUFFIXES]
    if skipped and videos:
        _note(
            f"skipped {_count(len(skipped), 'file')} whose suffix is not a video's "
            f"(--all-files sends them anyway): {_names(skipped)}"
        )
    if not files:
        raise InputProblem(f"no files to analyze in {_names(given)}")
    if not videos:
        suffixes = " ".join(VIDEO_SUFFIXES)
        if len(files) == 1:
            raise InputProblem(f"{files[0]} is not a video by its suffix ({suffixes}); --all-files sends it anyway")
        raise InputProblem(
            f"none of the {len(files)} files given is a video by its suffix ({suffixes}): {_names(files)}; "
            "--all-files sends them anyway"
        )
    return videos


def _receipt_names(paths: list[Path]) -> dict[Path, str]:
    """What each file's answer and receipt are saved as: its name less the suffix (``video.mp4`` ->
    ``video``), the whole name where two files share a stem, and ``-2``... where even names collide."""
    stems = [path.stem for path in paths]
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        base = path.stem if stems.count(path.stem) == 1 else path.name
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names[path] = name
    return names


def _save_receipts(folder: Path, results: dict[Path, dict | ServiceError]) -> int:
    """Each answer and its receipt, as ``receipt verify`` takes them back; the number saved."""
    answered = [path for path, result in results.items() if not isinstance(result, ServiceError)]
    names = _receipt_names(answered)
    for path in answered:
        answer = results[path]
        assert isinstance(answer, dict)
        (folder / f"{names[path]}.answer.json").write_text(json.dumps(answer, indent=2) + "\n")
        if isinstance(answer.get("receipt"), str):
            (folder / f"{names[path]}.receipt.jws").write_text(answer["receipt"] + "\n")
    return len(answered)


def _predict(client: DeepfakeClient, args: argparse.Namespace) -> int:
    files = _videos(args.files, args.all_files)
    store, pinned_now = None, []
    if args.save_receipts:  # before any upload: a folder that cannot be written, or a key refused, costs nothing
        args.save_receipts.mkdir(parents=True, exist_ok=True)
        store = _key_store(args)
        pinned_now = pin_keys(store, client.public_keys())
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("analyzing", total=len(files))
        results = client.predict_many(
            files, args.concurrency, args.refresh, on_done=lambda path, result: progress.advance(task)
        )
    failed = sum(isinstance(result, ServiceError) for result in results.values())
    if args.save_receipts:
        saved = _save_receipts(args.save_receipts, results)
        _note(
            f"saved the answer and receipt of {_count(saved, 'file')} in {args.save_receipts}"
            + (f" ({failed} refused: nothing saved for {'it' if failed == 1 else 'them'})" if failed else "")
            + f"; the public keys are pinned in {store}"
            + (f" ({len(pinned_now)} new)" if pinned_now else "")
        )
    if args.json:
        print(
            json.dumps(
                {
                    str(path): (
                        {"error": {"code": r.code, "message": r.message, "status": r.status}}
                        if isinstance(r, ServiceError)
                        else r
                    )
                    for path, r in results.items()
                },
                indent=2,
            )
        )
        return 1 if failed else 0
    table = Table("file", "result", "confidence", "P(FAKE)", "rule", "faces", "cached", "history id", "error")
    demo = False
    for path, result in results.items():
        if isinstance(result, ServiceError):
            status = f" ({result.status})" if result.status else ""
            refusal = printable(f"{result.code}{status}: {result.message}", "red")
            table.add_row(printable(path.name), printable("refused", "red"), "", "", "", "", "", "", refusal)
            continue
        demo |= result["model"]["untrained_demo"]
        table.add_row(
            printable(path.name),
            printable(result["result"]),
            f"{result['confidence']:.2f}",
            f"{result['p_fake']:.4f}",
            printable(result["verdict_rule"]),
            printable(f"{result['frames_with_face']}/{result['frames_analyzed']}"),
            "yes" if result["cached"] else "no",
            printable(result["history_id"]),
            "",
        )
    console.print(table)
    if demo:
        console.print("[bold red]UNTRAINED DEMO MODEL answered: these verdicts mean nothing.[/bold red]")
    return 1 if failed else 0


def _csv(client: DeepfakeClient, args: argparse.Namespace) -> int:
    text = client.csv(args.file)
    if not args.out:
        sys.stdout.write(text)
        return 0
    args.out.write_text(text)
    rows = max(0, sum(1 for _ in csv.reader(io.StringIO(text))) - 1)  # quoted newlines are one row
    _note(f"wrote {_count(rows, 'row')} (one per sampled frame) to {args.out}")
    return 0


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (*MALFORMED, ValueError) as error:  # UnicodeDecodeError, a JSONDecodeError, nesting past the stack
        raise InputProblem(f"{path} is not an answer's JSON") from error


def _answer_for(document: object, source: Path, file: Path) -> dict:
    """The answer about ``file`` in what the client wrote: one answer (``NAME.answer.json``, the
    service's JSON) as it is, or ``predict --json``'s ``{path: answer}``, where FILE's entry is the one
    under the same path, else the only one with the same file name."""
    if isinstance(document, dict) and ("frames" in document or "receipt" in document):
        return document
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise InputProblem(f"{source} is not an answer's JSON, nor predict --json's output")
    entry = document.get(str(file))
    if entry is None:
        same_file = [v for k, v in document.items() if os.path.abspath(k) == os.path.abspath(file)]
        same_name = [v for k, v in document.items() if Path(k).name == file.name]
        found = same_file or same_name
        if len(found) > 1:
            raise InputProblem(f"{source} holds {len(found)} answers for files named {file.name}: give that one's path")
        if not found:
            held = _names([Path(k) for k in document]) or "nothing"
            raise InputProblem(f"{source} holds no answer for {file.name} (it holds: {held})")
        entry = found[0]
    if "error" in entry and "receipt" not in entry:
        code = entry["error"].get("code") if isinstance(entry["error"], dict) else None
        raise InputProblem(f"{source}: the service refused {file.name} ({code}), so there is no receipt for it")
    return entry


def _read_receipt(argument: str, file: Path) -> tuple[str, list[dict] | None]:
    """The receipt, and the per-frame scores that came with it if the argument was an answer: the
    receipt itself; ``@path`` to a file holding it or an answer; or the path of an answer's JSON
    (a receipt's three base64url parts would make ``video.answer.json`` look like one, so a token is
    told by its header; a path by being a file, or by a ``/`` or a file suffix that no token holds)."""
    if argument.startswith("@"):
        path = Path(argument[1:])
    elif receipt_header(argument) is None and (
        os.path.isfile(argument) or os.sep in argument or "/" in argument or argument.endswith(PATH_SUFFIXES)
    ):
        path = Path(argument)
    else:
        return argument, None
    try:
        text = path.read_text().strip()
    except UnicodeDecodeError as error:
        raise InputProblem(f"{path} is not a text file holding a receipt") from error
    if not text.startswith("{"):
        return text, None
    answer = _answer_for(_read_json(path), path, file)
    token = answer.get("receipt")
    if not isinstance(token, str):
        raise InputProblem(f"{path}: the answer for {file.name} carries no receipt")
    frames = answer.get("frames")
    return token, frames if isinstance(frames, list) else None


def _read_frames(path: Path, file: Path) -> list[dict]:
    """The per-frame scores of the answer about ``file`` (a saved answer, or ``predict --json``'s output)."""
    frames = _answer_for(_read_json(path), path, file).get("frames")
    if not isinstance(frames, list):
        raise InputProblem(f"{path} is not an answer's JSON with its frames")
    return frames


def _read_public_keys(paths: list[Path]) -> dict[str, str]:
    """PEM public keys by key id, the id derived as the service derives it (SHA-256 of the DER)."""
    keys = {}
    for path in paths:
        pem = path.read_text(errors="replace")
        try:
            keys[public_key_id(pem)] = pem
        except ValueError as error:
            raise InputProblem(f"{path} is {error}") from error
    return keys


def _checking_keys(client: DeepfakeClient, args: argparse.Namespace) -> tuple[dict[str, str], Path | None]:
    """The keys an offline check uses, and the key store they came from (None: given as PEM files)."""
    if args.public_key:
        return _read_public_keys(args.public_key), None
    store = _key_store(args)
    if keys := read_key_store(store):
        return keys, store  # offline: the keys pinned on first use
    keys = client.public_keys()  # before the note: where the service does not answer, one error line alone
    _note(
        f"no public keys pinned in {store}: checked with the keys fetched from {client.url} just now "
        "(not pinned; deepfake-client keys save pins them)"
    )
    return keys, store


def _unpinned_error(result: Check, keys: dict[str, str], store: Path | None) -> Check:
    """Where a token names a key that is not pinned, the verdict says how to pin it."""
    if store is not None and keys and not result.valid and result.key_id is not None and result.key_id not in keys:
        return replace(
            result,
            error=f"signed by key {result.key_id}, which is not pinned in {store} "
            "(deepfake-client keys save pins the service's current keys, if you trust them)",
        )
    return result


def _receipt_verify(client: DeepfakeClient, args: argparse.Namespace) -> int:
    token, frames = _read_receipt(args.receipt, args.file)
    if args.answer:
        frames = _read_frames(args.answer, args.file)
    keys, store = _checking_keys(client, args)
    result = _unpinned_error(check_receipt(token, keys, args.file, frames), keys, store)
    print(json.dumps({"valid": result.valid, "key_id": result.key_id, "error": result.error, "claims": result.claims}))
    return 0 if result.valid else 1


def _sign(client: DeepfakeClient, args: argparse.Namespace) -> int:
    answer = client.sign(args.file)
    if args.out:
        args.out.write_text(answer["attestation"] + "\n")
        _note(f"wrote the attestation of {args.file.name} to {args.out}")
    print(json.dumps(answer, indent=2))
    return 0


def _verify(client: DeepfakeClient, args: argparse.Namespace) -> int:
    """By the service (an attestation or a deprecated signature), or offline (an attestation only)."""
    signature = args.signature
    if signature.startswith("@") or os.path.isfile(signature):  # no token is the name of a file
        path = Path(signature.removeprefix("@"))
        try:
            signature = path.read_text().strip()
        except UnicodeDecodeError as error:
            raise InputProblem(f"{path} is not a text file holding an attestation") from error
    if not (args.offline or args.public_key):
        answer = client.verify(args.file, signature)
        print(json.dumps(answer, indent=2))
        return 0 if answer["valid"] else 1
    if not is_attestation(signature):
        raise InputProblem("only an attestation (a JWS) checks offline; a signature_base64 needs the service")
    keys, store = _checking_keys(client, args)
    result = _unpinned_error(check_attestation("".join(signature.split()), keys, args.file), keys, store)
    print(json.dumps({"valid": result.valid, "key_id": result.key_id, "error": result.error, "claims": result.claims}))
    return 0 if result.valid else 1


def _keys_save(client: DeepfakeClient, args: argparse.Namespace) -> int:
    store = args.out or _key_store(args)
    listed = client.public_keys()
    new = pin_keys(store, listed)
    pinned = len(read_key_store(store))
    _note(f"pinned {_count(len(new), 'new public key')} from {client.url} in {store} ({pinned} pinned in all)")
    return 0


def _model(item: dict) -> str:
    """Which model answered, as short as tells models apart: verdicts of two models (or precisions) for
    one file do not compare. A hash is cut to 12 hex digits; what is not one (the demo's "none
    (untrained demo, seed 0)") is shown whole, up to 40 characters."""
    checkpoint = plain(item.get("checkpoint_sha256"))
    if HEX.fullmatch(checkpoint):
        checkpoint = checkpoint[:12]
    elif len(checkpoint) > 40:
        checkpoint = checkpoint[:39] + "…"
    return f"{checkpoint} {plain(item.get('precision'))}".strip()


def _history(client: DeepfakeClient, args: argparse.Namespace) -> int:
    answer = client.history(
        verdict=args.verdict,
        sha256=args.sha256,
        checkpoint_sha256=args.checkpoint.lower() if args.checkpoint else None,
        precision=args.precision,
        page=args.page,
        per_page=args.per_page,
    )
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    table = Table("id", "time", "file", "model", "result", "P(FAKE)", "SHA-256")
    for item in answer["items"]:
        table.add_row(
            printable(item["id"]),
            printable(item["created_at"][:19]),
            printable(item["filename"]),
            printable(_model(item)),
            printable(item["result"]),
            f"{item['p_fake']:.4f}",
            printable(item["sha256_hex"][:16]),
        )
    console.print(table)
    console.print(printable(f"{answer['total']} in all, page {answer['page']}"))
    return 0


def _csv_paths(path: Path) -> list[Path]:
    """The paths a CSV lists: its ``path`` column (or ``video``, ``file``) where the first row is a
    header, else its first column; relative ones are relative to the CSV's folder (as deepfake-eval
    reads ``path,label``: a label column is allowed, and ignored)."""
    try:
        with path.open(newline="") as stream:
            rows = [row for row in csv.reader(stream) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputProblem(f"{path} is not a CSV of paths") from error
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        named = [header.index(name) for name in CSV_HEADERS if name in header]
        if named:
            column, rows = named[0], rows[1:]
    listed = [Path(row[column].strip()) for row in rows if column < len(row) and row[column].strip()]
    if not listed:
        raise InputProblem(f"{path} lists no files (a path column, or paths in the first column)")
    return [entry if entry.is_absolute() else path.parent / entry for entry in listed]


def _job_files(given: list[Path], all_files: bool) -> list[Path]:
    """Folders expanded, CSVs read, then as ``predict`` takes them (``_videos``); missing files named."""
    expanded: list[Path] = []
    for path in given:
        is_list = path.suffix.lower() == ".csv" and path.is_file()
        expanded.extend(_csv_paths(path) if is_list else [path])
    missing = [path for path in expanded if not path.exists()]
    if missing:
        shown = ", ".join(plain(path) for path in missing[:SHOWN_NAMES])
        more = f" and {len(missing) - SHOWN_NAMES} more" if len(missing) > SHOWN_NAMES else ""
        raise InputProblem(f"no such file: {shown}{more}")
    return _videos(expanded, all_files)


def _outcome(batch: Batch, entry: Entry) -> dict:
    saved = entry.state in FINAL_JOB_STATES
    return {
        "state": entry.state,
        "job_id": entry.job_id,
        "answer": str(batch.answer_path(entry)) if saved else None,
        "result": entry.result,
        "p_fake": entry.p_fake,
        "flagged": entry.flagged,
        "error": entry.error,
        "sha256": entry.sha256,
    }


def _jobs_submit(client: DeepfakeClient, args: argparse.Namespace) -> int:
    files = _job_files(args.files, args.all_files)
    state_file = args.state or args.out / "state.json"
    batch = None
    try:
        batch = Batch(
            client,
            files,
            args.out,
            state_file,
            max_pending=args.max_pending,
            poll_s=args.poll,
            webhook_url=args.webhook_url,
            refresh=args.refresh,
        )
        entries = _run_batch(client, batch, state_file)
    except KeyboardInterrupt:
        pending = len(batch.pending) if batch else 0
        _note(
            f"interrupted: {_count(pending, 'job')} submitted and not finished go on on the service; "
            f"the state is saved in {state_file}: the same command again resumes the batch"
        )
        return 130
    failed = sum(entry.state != "done" for entry in entries.values())
    saved = sum(entry.state in FINAL_JOB_STATES for entry in entries.values())
    _note(
        f"saved {_count(saved, 'answer')} in {args.out} (NAME.job.json); the state is in {state_file}"
        + (f"; {failed} not done" if failed else "")
    )
    if args.json:
        print(json.dumps({str(path): _outcome(batch, entry) for path, entry in entries.items()}, indent=2))
        return 1 if failed else 0
    table = Table("file", "state", "result", "P(FAKE)", "flagged", "job id", "error")
    for path, entry in entries.items():
        error = entry.error or {}
        table.add_row(
            printable(path),
            printable(entry.state, "" if entry.state == "done" else "red"),
            printable(entry.result),
            "" if entry.p_fake is None else f"{entry.p_fake:.4f}",
            "" if entry.flagged is None else str(entry.flagged),
            printable(entry.job_id),
            printable(f"{error.get('code')}: {error.get('message')}" if error else "", "red"),
        )
    console.print(table)
    if any(entry.untrained_demo for entry in entries.values()):
        console.print("[bold red]UNTRAINED DEMO MODEL answered: these verdicts mean nothing.[/bold red]")
    return 1 if failed else 0


def _run_batch(client: DeepfakeClient, batch: Batch, state_file: Path) -> dict[Path, Entry]:
    """The batch under a progress bar: files finished of all, the unfinished jobs' progress counted in."""
    if batch.skipped:
        _note(f"{_count(batch.skipped, 'file')} already finished in {state_file}: not submitted again")
    errors = Console(stderr=True)
    # not on a terminal (a log, a pipe) a bar would only leave a blank line before the notes
    with Progress(console=errors, transient=True, disable=not errors.is_terminal) as progress:
        task = progress.add_task("jobs", total=len(batch.entries))

        def show(event: str, entry: Entry | None) -> None:
            if event == "lost" and entry is not None:
                _note(f"{Path(entry.path).name}'s job is not on {client.url} (erased?): submitted again")
            states = [e.state for e in batch.pending]
            progress.update(
                task,
                completed=batch.completed(),
                description=f"jobs: {states.count('running')} running, {states.count('queued')} queued",
            )

        show("start", None)
        return batch.run(show)


def _jobs_status(client: DeepfakeClient, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    outcome = 1 if job.get("state") in ("failed", "cancelled") else 0
    if args.json:
        print(json.dumps(job, indent=2))
        return outcome
    result, error = as_dict(job.get("result")), as_dict(job.get("error"))
    progress = job.get("progress")
    table = Table(show_header=False)  # a header is markup: the id, a service's string, goes in a cell
    table.add_row("job", printable(job.get("id")))
    table.add_row("state", printable(job.get("state"), "red" if outcome else ""))
    table.add_row("progress", f"{progress:.0%}" if isinstance(progress, int | float) else "")
    table.add_row("file", printable(f"{plain(job.get('filename'))} ({plain(job.get('size'))} bytes)"))
    table.add_row("created", printable(plain(job.get("created_at"))[:19]))
    if result:
        p_fake = result.get("p_fake")
        table.add_row("result", printable(result.get("result")))
        table.add_row("P(FAKE)", f"{p_fake:.4f}" if isinstance(p_fake, int | float) else "")
    for stretch in as_dict(job.get("timeline")).get("flagged") or []:
        stretch = as_dict(stretch)
        where = f"{stretch.get('start_s')}–{stretch.get('end_s')} s"
        table.add_row("flagged", printable(f"{where} (max P(FAKE) {stretch.get('max_p_fake')})"))
    if error:
        table.add_row("error", printable(f"{error.get('code')}: {error.get('message')}", "red"))
    console.print(table)
    return outcome


def _jobs_list(client: DeepfakeClient, args: argparse.Namespace) -> int:
    answer = client.jobs(page=args.page, per_page=args.per_page, state=args.state)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    table = Table("id", "created", "file", "state", "progress", "error")
    for item in answer["items"]:
        error = as_dict(item.get("error"))
        progress = item.get("progress")
        table.add_row(
            printable(item.get("id")),
            printable(plain(item.get("created_at"))[:19]),
            printable(item.get("filename")),
            printable(item.get("state")),
            f"{progress:.0%}" if isinstance(progress, int | float) else "",
            printable(error.get("code"), "red"),
        )
    console.print(table)
    console.print(printable(f"{answer['total']} in all, page {answer['page']}"))
    return 0


def _jobs_cancel(client: DeepfakeClient, args: argparse.Namespace) -> int:
    answer = client.cancel_job(args.id)
    if answer.get("erased"):
        _note(f"job {args.id} had finished ({answer.get('state')}): erased, its result with it")
    else:
        _note(f"job {args.id} cancelled")
    print(json.dumps(answer))
    return 0


def _jobs(client: DeepfakeClient, args: argparse.Namespace) -> int:
    return JOBS_COMMANDS[args.jobs_command](client, args)


JOBS_COMMANDS = {"submit": _jobs_submit, "status": _jobs_status, "list": _jobs_list, "cancel": _jobs_cancel}
COMMANDS = {
    "predict": _predict,
    "csv": _csv,
    "sign": _sign,
    "verify": _verify,
    "receipt": _receipt_verify,
    "keys": _keys_save,
    "jobs": _jobs,
    "history": _history,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with DeepfakeClient(args.url, args.api_key) as client:
        try:
            return COMMANDS[args.command](client, args)
        except (ServiceError, InputProblem, KeyStoreError, StateFileError, OSError) as error:
            print(f"error: {plain(error)}", file=sys.stderr)
            return 1
        except httpx.HTTPError as error:
            print(f"error: no answer from {plain(args.url)}: {plain(error) or type(error).__name__}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
