"""``deepfake-client``: the service from a terminal (replaces the original's usage_example.py).

    deepfake-client predict a.mp4 b.mov [--json] [--concurrency 4] [--refresh]
    deepfake-client csv a.mp4 [--out a.csv]
    deepfake-client sign a.mp4
    deepfake-client verify a.mp4 SIGNATURE_BASE64
    deepfake-client receipt verify a.mp4 RECEIPT [--public-key key.pem] [--answer answer.json]
    deepfake-client history [--verdict FAKE] [--sha256 HEX] [--page 1] [--per-page 20] [--json]

``--url`` (or DEEPFAKE_URL, default http://127.0.0.1:8080) and ``--api-key`` (or DEEPFAKE_API_KEY).
Exit status: 0 done (and valid, for the checks), 1 invalid or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from deepfake_client.api import DEFAULT_URL, DeepfakeClient, ServiceError, check_receipt

console = Console()
if not console.is_terminal:  # piped or captured: rich would assume 80 columns and wrap the tables
    console = Console(width=200)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DEEPFAKE_URL", DEFAULT_URL))
    parser.add_argument("--api-key", default=os.environ.get("DEEPFAKE_API_KEY"))
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="verdicts for one or more files, concurrently")
    predict.add_argument("files", nargs="+", type=Path)
    predict.add_argument("--json", action="store_true", help="the full answers as JSON")
    predict.add_argument("--concurrency", type=int, default=4)
    predict.add_argument("--refresh", action="store_true", help="analyse again even if the history has it")
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
        task = progress.add_task("analysing", total=len(args.files))
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
            table.add_row(path.name, f"[red]{result.code}[/red]", result.message, "", "", "", "", "")
            continue
        demo |= result["model"]["untrained_demo"]
        table.add_row(
            path.name,
            result["result"],
            f"{result['confidence']:.2f}",
            f"{result['p_fake']:.4f}",
            result["verdict_rule"],
            f"{result['frames_with_face']}/{result['frames_analyzed']}",
            "yes" if result["cached"] else "no",
            result["history_id"] or "",
        )
    console.print(table)
    if demo:
        console.print("[bold red]UNTRAINED DEMO MODEL answered: these verdicts mean nothing.[/bold red]")
    return 1 if failed else 0


def _receipt_verify(client: DeepfakeClient, args: argparse.Namespace) -> int:
    token = Path(args.receipt[1:]).read_text().strip() if args.receipt.startswith("@") else args.receipt
    frames = json.loads(args.answer.read_text())["frames"] if args.answer else None
    if args.public_key:
        from cryptography.hazmat.primitives import serialization

        keys = {}
        for path in args.public_key:
            pem = path.read_text()
            der = serialization.load_pem_public_key(pem.encode()).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            keys[hashlib.sha256(der).hexdigest()] = pem  # the key id, as the service derives it
        result = check_receipt(token, keys, args.file, frames)
    else:
        result = client.verify_receipt_offline(args.file, token, frames=frames)
    print(json.dumps({"valid": result.valid, "key_id": result.key_id, "error": result.error, "claims": result.claims}))
    return 0 if result.valid else 1


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
            answer = client.history(verdict=args.verdict, sha256=args.sha256, page=args.page, per_page=args.per_page)
            if args.json:
                print(json.dumps(answer, indent=2))
                return 0
            table = Table("id", "time", "file", "result", "P(FAKE)", "SHA-256")
            for item in answer["items"]:
                table.add_row(
                    item["id"],
                    item["created_at"][:19],
                    item["filename"],
                    item["result"],
                    f"{item['p_fake']:.4f}",
                    item["sha256_hex"][:16],
                )
            console.print(table)
            console.print(f"{answer['total']} in all, page {answer['page']}")
            return 0
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
