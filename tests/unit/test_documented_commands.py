"""Every command the README and docs/ show, checked as written: ``make`` targets exist (``make -n``),
the project's own commands parse with their real argument parsers, every ``curl`` names a route the
service has, on the port ``make serve`` uses, and every script named exists. (Before: the README's
``receipt verify`` took arguments the client's output did not fit, and commands named ports and
files that were not there.) Commands of other tools (docker, kubectl, aws, openssl…) are left to
their own documentation: they are counted, not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.S)
# Inline, only what names a thing that must exist (a target, a script, a route): inline mentions of
# the project's commands are often fragments (``deepfake-export --precision``), not whole commands.
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:make|python|\.venv/bin/python|curl) [^`\n]+)`")
ENVIRONMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
OTHER_TOOLS = {
    "docker", "kubectl", "aws", "openssl", "apt-get", "su", "buildah", "podman", "helm", "kustomize", "key=$(python3",
    "digest=$(printf", "export", "cd", "git", "pip", "python3", "perf_analyzer", "tritonserver", "curl",
}  # fmt: skip


OPERATORS = {"&&", "||", "|", ";", "&"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>&1"}


def _simple_commands(words: list[str]) -> Iterator[list[str]]:
    """A shell line's simple commands (split at ``&&``, ``|``, ``;``, ``&``), redirections dropped."""
    current: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in OPERATORS:
            yield current
            current = []
        elif word in REDIRECTIONS:
            skip = word != "2>&1"
        else:
            current.append(word)
    yield current


def commands() -> Iterator[tuple[str, list[str]]]:
    """(where, words) of every simple command in a fenced shell block (continuation lines joined,
    comments cut) or quoted inline in the prose, leading variable assignments dropped."""
    for document in DOCUMENTS:
        text = document.read_text()
        lines = [line for block in FENCE.findall(text) for line in block.replace("\\\n", " ").splitlines()]
        lines += INLINE.findall(FENCE.sub("", text))  # commands quoted in the prose
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#") or ":" in line.split(" ")[0] and "://" not in line:
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue  # not shell (a YAML or Python fragment in a bash fence)
            for command in _simple_commands(words):
                while command and ENVIRONMENT.match(command[0]):
                    command = command[1:]
                if command:
                    yield f"{document.relative_to(ROOT)}: {line}", command


def _parsers() -> dict[str, Callable[[], argparse.ArgumentParser] | Callable[[list[str]], object]]:
    from deepfake_client.__main__ import _parser as client_parser
    from evaluation.__main__ import parse_args as evaluation_args
    from export.__main__ import parse_args as export_args
    from preprocess_service.__main__ import parser as serve_parser
    from preprocess_service.jobs.worker import parser as worker_parser

    return {
        "deepfake-client": lambda argv: client_parser().parse_args(argv),
        "deepfake-export": export_args,
        "deepfake-eval": evaluation_args,
        "deepfake-serve": lambda argv: serve_parser().parse_args(argv),
        "deepfake-worker": lambda argv: worker_parser().parse_args(argv),
    }


def _has_route(method: str, path: str) -> bool:
    """Whether the service routes ``method path``: asked of the app itself, without its lifespan (no
    model, no database), so a route answers something (an error of its own) and only a path the
    router does not know answers the framework's own 404 "Not Found"."""
    from starlette.testclient import TestClient

    from preprocess_service.app import create_app
    from preprocess_service.settings import Settings

    client = TestClient(create_app(Settings()), raise_server_exceptions=False)
    response = client.request(method, path)
    return not (response.status_code == 404 and response.json()["error"]["message"] == "Not Found")


DOCUMENTED = list(commands())


def test_the_documents_show_commands():
    assert len(DOCUMENTED) > 60


@pytest.mark.parametrize(("where", "words"), [c for c in DOCUMENTED if Path(c[1][0]).name.startswith("deepfake-")])
def test_the_projects_commands_parse(where: str, words: list[str]) -> None:
    name = Path(words[0]).name
    argv = words[1:]
    if "compare" == (argv or [""])[0] and name == "deepfake-eval":
        return  # `deepfake-eval compare A B` has its own small parser inside main
    try:
        _parsers()[name](argv)
    except SystemExit as refused:
        pytest.fail(f"{where}\n  refused by {name}'s own parser (exit {refused.code})")


@pytest.mark.parametrize(("where", "words"), [c for c in DOCUMENTED if c[1][0] == "make"])
def test_make_targets_exist(where: str, words: list[str]) -> None:
    arguments = [word for word in words[1:] if not word.startswith("-")]
    result = subprocess.run(["make", "-n", "-B", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "No rule to make target" not in result.stderr, f"{where}\n{result.stderr}"
    assert "Nothing to be done for" not in result.stdout, f"{where}: a .PHONY name without a rule"


@pytest.mark.parametrize(("where", "words"), [c for c in DOCUMENTED if c[1][0] == "curl"])
def test_curl_names_a_route_of_the_service(where: str, words: list[str]) -> None:
    url = next(word for word in words if word.startswith("http"))
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return  # a cluster's address (Ingress): the route is checked on the path alone below
    assert parts.port in (8080, 8081), f"{where}: make serve listens on 8080 (8081 beside it)"
    method = words[words.index("-X") + 1] if "-X" in words else "POST" if "-F" in words else "GET"
    assert _has_route(method, parts.path), f"{where}: the service has no route {method} {parts.path}"


@pytest.mark.parametrize(
    ("where", "words"), [c for c in DOCUMENTED if c[1][0] in (".venv/bin/python", "python") and len(c[1]) > 1]
)
def test_scripts_named_exist(where: str, words: list[str]) -> None:
    script = words[1]
    if script == "-m":
        assert importlib.util.find_spec(words[2]) is not None, where
    elif script.endswith(".py"):
        assert (ROOT / script).exists(), where


def test_other_tools_are_only_counted():
    seen = {Path(words[0]).name for _, words in DOCUMENTED}
    assert seen & OTHER_TOOLS  # the docs do show them; their syntax is theirs to document
