"""Schemathesis fuzz of the sidecar from its own OpenAPI schema, in process (ASGI), over a
fake vLLM that answers like vLLM. Authenticated with an `all` key.

Checks on every response: no 5xx, no hang (10 s per request), status code, content type,
headers and body conform to the schema. Positive and negative (schema-violating) inputs.

The Ollama routes read their bodies themselves (``parse_body``), so FastAPI's schema has no
request body for them; the fuzz adds the bodies from ``serving.protocols.ollama.types`` so
those routes get real inputs too.

``make test`` runs a short pass (FUZZ_EXAMPLES_DEFAULT examples per operation and mode);
``make fuzz`` runs ``--fuzz-examples=N`` for at least 10,000 requests and prints the figures.
"""

from __future__ import annotations

import collections
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fake_vllm import MODEL_NAMES, FakeVLLM
from tests.sidecar_fixture import build_app, make_keys, openapi_schema, operations

FUZZ_EXAMPLES_DEFAULT = 12
REQUEST_TIMEOUT_S = 10.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
@dataclass
class Figures:
    requests: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    by_operation: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


def _served_models_only(schema: dict[str, Any]) -> dict[str, Any]:
    """Positive cases name a served model, so they get past the 404 into the real paths
    (streams, translation); negative cases still send any other value. The schema is the
    app's own otherwise: every body, Ollama's included, is documented there."""
    schema = copy.deepcopy(schema)
    for name, component in schema["components"]["schemas"].items():
        props = component.get("properties", {})
        if "model" in props and name != "ValidationError":
            props["model"] = {"type": "string", "enum": list(MODEL_NAMES)}
    return schema


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    state_dir: Path = tmp_path_factory.mktemp("fuzz")
    keys = make_keys(state_dir)
    app = build_app(state_dir, FakeVLLM())
    loaded = schemathesis.openapi.from_dict(_served_models_only(openapi_schema(app)))
    loaded.app = app
    return loaded, keys.admin


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    collected = Figures()
    yield collected
    print_figures(collected, request.config.getoption("--fuzz-examples", default=None))


def print_figures(f: Figures, examples: object) -> None:
    reporter = f"\nFUZZ FIGURES (examples per operation and mode: {examples or FUZZ_EXAMPLES_DEFAULT})\n"
    reporter += f"  requests: {f.requests}\n  5xx: {len(f.server_errors)}\n"
    reporter += f"  hangs (> {REQUEST_TIMEOUT_S:.0f} s): {len(f.hangs)}\n"
    reporter += f"  schema violations: {len(f.violations)}\n"
    reporter += f"  slowest response: {f.slowest_s * 1000:.0f} ms\n"
    reporter += f"  statuses: {dict(sorted(f.by_status.items()))}\n"
    reporter += f"  operations: {len(f.by_operation)}\n"
    kinds = collections.Counter(v.split(": ")[0] for v in f.violations)
    for kind, count in sorted(kinds.items()):
        reporter += f"  violation x{count}: {kind}\n"
    for line in (f.server_errors + f.hangs)[:20]:
        reporter += f"  ! {line}\n"
    print(reporter)


def _fuzz_one(target: tuple[Any, str], figures: Figures, method: str, path: str,
              mode: GenerationMode, examples: int, explore: bool) -> None:
    loaded, key = target
    operation = loaded[path][method]
    label = f"{method} {path} ({mode.value})"
    auth = {"Authorization": f"Bearer {key}"}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=not explore,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        started = time.perf_counter()
        try:
            response = case.call(headers=auth, timeout=REQUEST_TIMEOUT_S)
        except requests.exceptions.Timeout:
            figures.hangs.append(f"{label}: {case.body!r:.200}")
            return
        elapsed = time.perf_counter() - started
        figures.slowest_s = max(figures.slowest_s, elapsed)
        figures.requests += 1
        figures.by_operation[label] += 1
        figures.by_status[response.status_code] += 1
        if response.status_code >= 500:
            figures.server_errors.append(
                f"{label} -> {response.status_code} {response.content[:300]!r} for {case.body!r:.300}")
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except FailureGroup as group:
            for failure in group.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                figures.violations.append(
                    f"{label} -> {response.status_code} {title}: {response.content[:200]!r}")

    try:
        run()
    except Unsatisfiable:  # negative mode on an operation without inputs: nothing to break
        assert mode is GenerationMode.NEGATIVE


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "operation" in metafunc.fixturenames:
        app = build_app(Path("/nonexistent-state"), FakeVLLM())
        ops = operations(openapi_schema(app))
        metafunc.parametrize("operation", ops, ids=[f"{m} {p}" for m, p in ops])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_operation(fuzz_target: tuple[Any, str], figures: Figures, operation: tuple[str, str],
                        mode: GenerationMode, request: pytest.FixtureRequest) -> None:
    asked = request.config.getoption("--fuzz-examples", default=None)
    examples = int(asked or FUZZ_EXAMPLES_DEFAULT)
    # make test replays the same inputs every run (a CI failure is reproducible, and the
    # pass/fail of a commit does not depend on luck); make fuzz explores new ones each time.
    explore = asked is not None
    method, path = operation
    before = (len(figures.server_errors), len(figures.hangs), len(figures.violations))
    _fuzz_one(fuzz_target, figures, method, path, mode, examples, explore)
    assert figures.server_errors[before[0]:] == []
    assert figures.hangs[before[1]:] == []
    assert figures.violations[before[2]:] == []
