"""``deepfake-client``: the service from a terminal (replaces the original's usage_example.py).

    deepfake-client predict a.mp4 b.mov [--json] [--concurrency 4] [--refresh]
    deepfake-client csv a.mp4 [--out a.csv]
    deepfake-client sign a.mp4
    deepfake-client verify a.mp4 SIGNATURE_BASE64
    deepfake-client receipt verify a.mp4 RECEIPT [--public-key key.pem] [--answer answer.json]
    deepfake-client history [--verdict FAKE] [--sha256 HEX] [--page 1] [--per-page 20] [--json]

``--url`` (or DEEPFAKE_URL, default http://127.0.0.1:8080) and ``--api-key`` (or DEEPFAKE_API_KEY).
Exit status: 0 done (and valid, for the checks), 1 invalid or refused, 2 usage. A check's verdict is
one JSON line on standard output; a refusal or a problem with what was given is one ``error:`` line
on standard error, never a traceback.

Strings the service stored (file names, codes, messages) are printed as plain text: control
characters are dropped and rich markup is shown, not interpreted, so a file name cannot move the
cursor, retitle the terminal or restyle the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from deepfake_client.api import DEFAULT_URL, DeepfakeClient, ServiceError, check_receipt

console = Console()
if not console.is_terminal:  # piped or captured: rich would assume 80 columns and wrap the tables
    console = Console(width=200)


# C0 controls (ESC among them), DEL, C1 controls (0x9B is a one-byte CSI to many terminals), and the
# Unicode Bidi_Control characters, which reorder what is shown (a name that reads as another).
_UNPRINTABLE = dict.fromkeys(
    [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


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
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="verdicts for one or more files, concurrently")
    predict.add_argument("files", nargs="+", type=Path)
    predict.add_argument("--json", action="store_true", help="the full answers as JSON")
    predict.add_argument("--concurrency", type=int, default=4)
    predict.add_argument("--refresh", action="store_true", help="analyze again even if the history has it")
    csv = commands.add_parser("csv", help="per-frame scores as CSV")
    csv.add_argument("file", type=Path)
    csv.add_argument("--out", type=Path, help="write here instead of standard output")
    sign = commands.add_parser("sign", help="a timestamped attestation of the file's SHA-256")
    sign.add_argument("file", type=Path)
    verify = commands.add_parser("verify", help="check a signature against the file")
    verify.add_argument("file", type=Path)
    verify.add_argument("signature")
    receipt = commands.add_parser("receipt", help="analysis receipts")
    receipt_commands = receipt.add_subparsers(dest="receipt_command", required=True)
    check = receipt_commands.add_parser("verify", help="check a receipt offline against the file")
    check.add_argument("file", type=Path)
    check.add_argument("receipt", help="the receipt, or @path to a file holding it")
    check.add_argument("--public-key", type=Path, action="append", help="PEM file(s): fully offline, no request")
    check.add_argument("--answer", type=Path, help="the answer's JSON: its per-frame scores are checked too")
    history = commands.add_parser("history", help="past analyses, newest first")
    history.add_argument("--verdict", choices=("FAKE", "REAL"))
    history.add_argument("--sha256")
    history.add_argument("--page", type=int, default=1)
    history.add_argument("--per-page", type=int, default=20)
    history.add_argument("--json", action="store_true")
    return parser


def _predict(client: DeepfakeClient, args: argparse.Namespace) -> int:
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("analyzing", total=len(args.files))
        results = client.predict_many(
            args.files, args.concurrency, args.refresh, on_done=lambda path, result: progress.advance(task)
        )
    failed = sum(isinstance(result, ServiceError) for result in results.values())
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
    table = Table("file", "result", "confidence", "P(FAKE)", "rule", "faces", "cached", "history id")
    demo = False
    for path, result in results.items():
        if isinstance(result, ServiceError):
            table.add_row(printable(path.name), printable(result.code, "red"), printable(result.message))
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
        )
    console.print(table)
    if demo:
        console.print("[bold red]UNTRAINED DEMO MODEL answered: these verdicts mean nothing.[/bold red]")
    return 1 if failed else 0


def _read_token(argument: str) -> str:
    """The receipt itself, or ``@path``: the file's text."""
    if not argument.startswith("@"):
        return argument
    try:
        return Path(argument[1:]).read_text().strip()
    except UnicodeDecodeError as error:
        raise InputProblem(f"{argument[1:]} is not a text file holding a receipt") from error


def _read_frames(path: Path) -> list[dict]:
    """The per-frame scores of an answer saved as JSON (``predict --json``'s or the service's)."""
    try:
        frames = json.loads(path.read_text())["frames"]
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise InputProblem(f"{path} is not an answer's JSON with its frames") from error
    if not isinstance(frames, list):
        raise InputProblem(f"{path} is not an answer's JSON with its frames")
    return frames


def _read_public_keys(paths: list[Path]) -> dict[str, str]:
    """PEM public keys by key id, the id derived as the service derives it (SHA-256 of the DER)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys = {}
    for path in paths:
        pem = path.read_text(errors="replace")
        try:
            key = serialization.load_pem_public_key(pem.encode())
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise InputProblem(f"{path} is not a PEM public key") from error
        if not isinstance(key, rsa.RSAPublicKey):
            raise InputProblem(f"{path} is not an RSA public key")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        keys[hashlib.sha256(der).hexdigest()] = pem
    return keys


def _receipt_verify(client: DeepfakeClient, args: argparse.Namespace) -> int:
    token = _read_token(args.receipt)
    frames = _read_frames(args.answer) if args.answer else None
    if args.public_key:
        result = check_receipt(token, _read_public_keys(args.public_key), args.file, frames)
    else:
        result = client.verify_receipt_offline(args.file, token, frames=frames)
    print(json.dumps({"valid": result.valid, "key_id": result.key_id, "error": result.error, "claims": result.claims}))
    return 0 if result.valid else 1


def _history(client: DeepfakeClient, args: argparse.Namespace) -> int:
    answer = client.history(verdict=args.verdict, sha256=args.sha256, page=args.page, per_page=args.per_page)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    table = Table("id", "time", "file", "result", "P(FAKE)", "SHA-256")
    for item in answer["items"]:
        table.add_row(
            printable(item["id"]),
            printable(item["created_at"][:19]),
            printable(item["filename"]),
            printable(item["result"]),
            f"{item['p_fake']:.4f}",
            printable(item["sha256_hex"][:16]),
        )
    console.print(table)
    console.print(printable(f"{answer['total']} in all, page {answer['page']}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with DeepfakeClient(args.url, args.api_key) as client:
        try:
            if args.command == "predict":
                return _predict(client, args)
            if args.command == "csv":
                text = client.csv(args.file)
                if args.out:
                    args.out.write_text(text)
                else:
                    sys.stdout.write(text)
                return 0
            if args.command == "sign":
                print(json.dumps(client.sign(args.file), indent=2))
                return 0
            if args.command == "verify":
                answer = client.verify(args.file, args.signature)
                print(json.dumps(answer, indent=2))
                return 0 if answer["valid"] else 1
            if args.command == "receipt":
                return _receipt_verify(client, args)
            return _history(client, args)
        except (ServiceError, InputProblem, OSError) as error:
            print(f"error: {plain(error)}", file=sys.stderr)
            return 1
        except httpx.HTTPError as error:
            print(f"error: no answer from {plain(args.url)}: {plain(error) or type(error).__name__}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
