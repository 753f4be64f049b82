"""Prepare a local Triton Inference Server for tests and benchmarks on a CPU host, idempotently.

From PyPI only (no other download): the ``nvidia-pytriton`` wheel carries a real ``tritonserver``
2.51 with the python backend and per-Python stubs; ``tritonclient==2.51.0`` carries a
``perf_analyzer`` of the same release. Both are unpacked into a tools folder (never installed into
the project's environment: pytriton pins numpy<2 and an old tritonclient). Triton's Python stub
gets its own venv with numpy<2 (numpy 2 there corrupts output sizes), onnxruntime and openvino, and
the stand-in (``standin/model.py``) is put where Triton looks for the onnxruntime and openvino backends.

    python -m deploy.triton_local.prepare [TOOLS_DIR]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

PYTRITON = "nvidia-pytriton==0.7.0"
TRITONCLIENT = "tritonclient==2.51.0"
STUB_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TRITON_VENV_PACKAGES = ["numpy<2", "onnxruntime>=1.20", "openvino>=2026.4,<2027"]
STANDIN_BACKENDS = ("onnxruntime", "openvino")  # names Triton looks for; one stand-in serves both
DEFAULT_TOOLS_DIR = Path(
    os.environ.get("DEEPFAKE_TRITON_TOOLS", Path.home() / ".cache" / "deepfake-detector" / "triton-2.51")
)
HERE = Path(__file__).resolve().parent
STAMP_VERSION = "4"  # bump when the layout below changes


@dataclass(frozen=True)
class Tools:
    root: Path

    @property
    def tritonserver(self) -> Path:
        return self.root / "pytriton" / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.root / "backends"

    @property
    def perf_analyzer(self) -> Path:
        return self.root / "tritonclient" / "tritonclient-2.51.0.data" / "data" / "bin" / "perf_analyzer"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def lib_dirs(self) -> list[Path]:
        return [
            self.root / "lib",
            self.root / "pytriton" / "nvidia_pytriton.libs",
            Path(sysconfig.get_config_var("LIBDIR")),
        ]

    def environment(self) -> dict[str, str]:
        """What the server, its Python stub and perf_analyzer need to find their libraries."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, self.lib_dirs), env.get("LD_LIBRARY_PATH", "")])
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        return env


def _pip_download(requirement: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", str(folder)], check=True
    )
    name = requirement.split("==")[0].replace("-", "_")
    return next(p for p in folder.glob("*.whl") if p.name.lower().startswith(name.lower()))


def _unpack(wheel: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    for path in target.rglob("*"):  # zip drops the execute bits
        if path.is_file() and (path.parent.name == "bin" or path.name.startswith("triton_python_backend_stub")):
            path.chmod(0o755)


def _link_libraries(tools: Tools) -> None:
    """perf_analyzer wants libb64.so.0d and libcudart.so.12; the pytriton wheel has both, renamed."""
    libs = tools.root / "pytriton" / "nvidia_pytriton.libs"
    own = tools.root / "lib"
    own.mkdir(exist_ok=True)
    for pattern, name in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        source = next(libs.glob(pattern))
        link = own / name
        link.unlink(missing_ok=True)
        link.symlink_to(source)


def _backends(tools: Tools) -> None:
    server_dir = tools.root / "pytriton" / "pytriton" / "tritonserver"
    python_backend = tools.backends / "python"
    if tools.backends.exists():
        shutil.rmtree(tools.backends)
    shutil.copytree(server_dir / "backends" / "python", python_backend)
    stub = server_dir / "python_backend_stubs" / STUB_PYTHON / "triton_python_backend_stub"
    shutil.copy2(stub, python_backend / "triton_python_backend_stub")
    for name in STANDIN_BACKENDS:
        (tools.backends / name).mkdir(parents=True)
        shutil.copy2(HERE / "standin" / "model.py", tools.backends / name / "model.py")


def prepare(root: Path = DEFAULT_TOOLS_DIR) -> Tools:
    tools = Tools(root)
    stamp = root / ".prepared"
    if stamp.exists() and stamp.read_text() == STAMP_VERSION and tools.tritonserver.exists():
        _backends(tools)  # cheap: keeps the stand-in in step with this checkout
        return tools
    root.mkdir(parents=True, exist_ok=True)
    downloads = root / "downloads"
    _unpack(_pip_download(PYTRITON, downloads), root / "pytriton")
    _unpack(_pip_download(TRITONCLIENT, downloads), root / "tritonclient")
    _link_libraries(tools)
    _backends(tools)
    if not (tools.venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(tools.venv)], check=True)
    subprocess.run(
        [str(tools.venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *TRITON_VENV_PACKAGES], check=True
    )
    shutil.rmtree(downloads, ignore_errors=True)
    stamp.write_text(STAMP_VERSION)
    return tools


if __name__ == "__main__":
    print(prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TOOLS_DIR).root)
