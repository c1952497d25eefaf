"""Locust users for an OpenAI/Ollama-compatible LLM endpoint.

Each request is timed chunk by chunk (one read per SSE/NDJSON line, as soon as it
arrives) and reported through Locust's ``request`` event with the full
:class:`~benchmarks.metrics.RequestRecord` in ``context["record"]``; Locust's own stats
see the end-to-end latency.

Run by the sweep runner (``python -m benchmarks run``), or on its own::

    .venv/bin/locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000 \
        --bench-api-key "$KEY" --bench-workload chat OpenAIChatStreamUser

(``--bench-raw-out FILE`` writes the raw records as JSON lines.)
"""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

if not __package__:  # loaded by `locust -f benchmarks/locustfile.py`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geventhttpclient import HTTPClient
from geventhttpclient.url import URL
from locust import User, constant, events, task
from locust.env import Environment

from benchmarks.metrics import RequestRecord, compute_timing
from benchmarks.streams import (
    LineEvent,
    parse_ollama_line,
    parse_openai_body,
    parse_openai_sse_line,
)
from benchmarks.workloads import (
    PromptSource,
    Workload,
    load_workloads,
    ollama_chat_body,
    ollama_generate_body,
    openai_chat_body,
)


class BenchRequestError(Exception):
    """A request that failed: HTTP error status, error event in the stream, cut stream."""


@dataclass
class BenchContext:
    """What the users need to build and label requests; lives on ``parsed_options``."""

    workload: Workload
    prompts: PromptSource
    api_key: str
    model: str = "gpt-oss-20b"
    target: str = "default"
    network_timeout_s: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


def bench_context(environment: Environment) -> BenchContext:
    context = getattr(environment.parsed_options, "bench_context", None)
    if context is None:
        raise RuntimeError("no bench_context on parsed_options: run through benchmarks.sweep")
    return context


@dataclass
class _Outcome:
    status: int = 0
    token_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    done: bool = False

    def absorb(self, event: LineEvent, now: float) -> None:
        if event.has_text:
            self.token_times.append(now)
        if event.completion_tokens is not None:
            self.completion_tokens = event.completion_tokens
        if event.prompt_tokens is not None:
            self.prompt_tokens = event.prompt_tokens
        if event.error is not None and self.error is None:
            self.error = event.error
        self.done = self.done or event.done


class LLMUser(User):
    """One simulated client: sends a request, waits for the whole answer, repeats."""

    abstract = True
    wait_time = constant(0)
    api: str = ""
    path: str = ""
    streamed: bool = True
    parse_line: Callable[[bytes], LineEvent] = staticmethod(parse_openai_sse_line)

    def build_body(self, ctx: BenchContext, prompt: str) -> dict[str, Any]:
        raise NotImplementedError

    def on_start(self) -> None:
        ctx = bench_context(self.environment)
        if not self.host:
            raise RuntimeError("no host: pass --host (locust) or --base-url (python -m benchmarks)")
        self._base_url: str = self.host
        self._prefix = URL(self._base_url).path.rstrip("/")
        self._timeout = ctx.network_timeout_s
        self._client = self._new_client()

    def _new_client(self) -> HTTPClient:
        return HTTPClient.from_url(
            self._base_url, concurrency=1, connection_timeout=10.0, network_timeout=self._timeout
        )

    def on_stop(self) -> None:
        self._client.close()

    @task
    def one_request(self) -> None:
        ctx = bench_context(self.environment)
        body = json.dumps(self.build_body(ctx, ctx.prompts.next_prompt())).encode()
        start = time.time()
        sent = time.perf_counter()
        outcome = self._exchange(ctx, body)
        finished = time.perf_counter()
        record = self._record(ctx, outcome, start, sent, finished)
        self.environment.events.request.fire(
            request_type="POST",
            name=self.api,
            response_time=record.e2el * 1000.0,
            response_length=record.output_tokens,
            exception=BenchRequestError(record.error) if record.error else None,
            context={"record": record},
        )

    def _exchange(self, ctx: BenchContext, body: bytes) -> _Outcome:
        headers = {"Authorization": f"Bearer {ctx.api_key}", "Content-Type": "application/json"}
        outcome = _Outcome()
        try:
            response = self._client.request(
                "POST", self._prefix + self.path, body=body, headers=headers
            )
            outcome.status = response.status_code
            if outcome.status >= 400:
                text = response.read().decode("utf-8", "replace")
                outcome.error = f"HTTP {outcome.status}: {text[:200]}"
            elif self.streamed:
                while line := response.readline(b"\n"):
                    outcome.absorb(self.parse_line(line), time.perf_counter())
                if not outcome.done and outcome.error is None:
                    outcome.error = "stream ended before its final event"
            else:
                outcome.absorb(parse_openai_body(response.read()), time.perf_counter())
            response.release()
        except Exception as exc:  # connection refused/reset, timeouts: recorded, not raised
            outcome.error = f"{type(exc).__name__}: {exc}"
            self._client.close()
            self._client = self._new_client()
        return outcome

    def _record(
        self, ctx: BenchContext, outcome: _Outcome, start: float, sent: float, finished: float
    ) -> RequestRecord:
        from_usage = outcome.completion_tokens is not None
        tokens = outcome.completion_tokens if from_usage else len(outcome.token_times)
        timing = compute_timing(
            sent, outcome.token_times, finished, tokens or 0, streamed=self.streamed
        )
        return RequestRecord(
            api=self.api,
            workload=ctx.workload.name,
            target=ctx.target,
            start=start,
            ok=outcome.error is None,
            status=outcome.status,
            e2el=timing.e2el,
            ttft=timing.ttft,
            tpot=timing.tpot,
            itl=list(timing.itl),
            output_tokens=tokens or 0,
            prompt_tokens=outcome.prompt_tokens or 0,
            token_source="usage" if from_usage else "chunks",
            chunks=len(outcome.token_times),
            error=outcome.error,
        )


class OpenAIChatStreamUser(LLMUser):
    api = "openai-chat-stream"
    path = "/v1/chat/completions"

    def build_body(self, ctx: BenchContext, prompt: str) -> dict[str, Any]:
        return openai_chat_body(ctx.workload, prompt, ctx.model, stream=True)


class OpenAIChatUser(LLMUser):
    api = "openai-chat"
    path = "/v1/chat/completions"
    streamed = False

    def build_body(self, ctx: BenchContext, prompt: str) -> dict[str, Any]:
        return openai_chat_body(ctx.workload, prompt, ctx.model, stream=False)


class OllamaChatUser(LLMUser):
    api = "ollama-chat"
    path = "/api/chat"
    parse_line = staticmethod(lambda line: parse_ollama_line(line, generate=False))

    def build_body(self, ctx: BenchContext, prompt: str) -> dict[str, Any]:
        return ollama_chat_body(ctx.workload, prompt, ctx.model)


class OllamaGenerateUser(LLMUser):
    api = "ollama-generate"
    path = "/api/generate"
    parse_line = staticmethod(lambda line: parse_ollama_line(line, generate=True))

    def build_body(self, ctx: BenchContext, prompt: str) -> dict[str, Any]:
        return ollama_generate_body(ctx.workload, prompt, ctx.model)


USER_CLASSES: dict[str, type[LLMUser]] = {
    cls.api: cls
    for cls in (OpenAIChatStreamUser, OpenAIChatUser, OllamaChatUser, OllamaGenerateUser)
}


# --- plain `locust -f` runs: options and a raw-record writer -------------------------------


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--bench-api-key", default="", help="Bearer key for the endpoint")
    parser.add_argument("--bench-workload", default="chat", help="profile in workloads.toml")
    parser.add_argument("--bench-model", default="gpt-oss-20b")
    parser.add_argument("--bench-seed", type=int, default=1)
    parser.add_argument("--bench-raw-out", default="", help="write raw records (JSONL) here")


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    options: Namespace | None = environment.parsed_options
    if options is None or getattr(options, "bench_context", None) is not None:
        return  # library use: the sweep runner set everything up
    workload = load_workloads()[options.bench_workload]
    options.bench_context = BenchContext(
        workload=workload,
        prompts=PromptSource(workload, options.bench_seed),
        api_key=options.bench_api_key,
        model=options.bench_model,
    )
    if options.bench_raw_out:
        sink: IO[str] = open(options.bench_raw_out, "a", encoding="utf-8")

        def write(context: dict[str, Any], **_: Any) -> None:
            record = context.get("record")
            if isinstance(record, RequestRecord):
                sink.write(json.dumps(record.to_json()) + "\n")

        environment.events.request.add_listener(write)
        environment.events.quit.add_listener(lambda **_: sink.close())
