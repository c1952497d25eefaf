"""Ollama model-management routes: /api/tags, show, ps, copy, delete, pull, push, create.

The deployment serves one fixed model; these routes describe it truthfully and manage
aliases (/api/copy) and presets (/api/create: a Modelfile's SYSTEM, PARAMETERs and MESSAGEs
over the served weights). Pushing, pulling other models, or creating anything that needs
other weights is refused with a clear 4xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from serving.errors import (
    BadRequest,
    NotFound,
    UpstreamUnavailable,
)
from serving.protocols.ollama import modelfile as modelfile
from serving.protocols.ollama import models as models
from serving.protocols.ollama.types import (
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    PullRequest,
    PushRequest,
    ShowRequest,
    parse_body,
)
from serving.sidecar.deps import Principal, get_settings, get_upstream, require
from serving.upstream import open_upstream, read_and_close

_models = Depends(require("models"))
_admin = Depends(require("admin"))


@dataclass
class OllamaState:
    """Per-app state of the Ollama routes (on ``app.state.ollama``): caches of facts that do
    not change while the app lives, and the options already reported as ignored."""

    checkpoints: dict[str, models.Checkpoint] = field(default_factory=dict)
    max_model_len: int | None = None
    logged_options: set[str] = field(default_factory=set)


def ollama_state(request: Request) -> OllamaState:
    state: OllamaState | None = getattr(request.app.state, "ollama", None)
    if state is None:
        state = request.app.state.ollama = OllamaState()
    return state


def registry(request: Request) -> models.ModelRegistry:
    settings = get_settings(request)
    return models.ModelRegistry(tuple(settings.served_model_names), settings.aliases_file)


async def served_model(request: Request) -> models.ServedModel:
    """The served model as vLLM describes it now (503 when vLLM does not answer)."""
    upstream = await open_upstream(
        get_upstream(request),
        "GET",
        "/v1/models",
        headers={"x-request-id": request.state.request_id},
    )
    raw = await read_and_close(upstream)
    cards = json.loads(raw).get("data") if upstream.status_code == 200 else None
    if not cards:
        raise UpstreamUnavailable(
            f"The engine did not list its model (HTTP {upstream.status_code})."
        )
    card = cards[0]
    state = ollama_state(request)
    root = str(card.get("root") or card["id"])
    if root not in state.checkpoints:
        family = "gpt-oss-120b" if "120b" in root else "gpt-oss-20b"
        state.checkpoints[root] = models.read_checkpoint(root, family)
    checkpoint = state.checkpoints[root]
    state.max_model_len = int(card.get("max_model_len") or 0) or None
    return models.ServedModel(
        upstream_name=str(card["id"]),
        root=root,
        max_model_len=state.max_model_len or 0,
        created=checkpoint.modified or int(card.get("created") or 0),
        config=checkpoint.config,
        size_bytes=checkpoint.size_bytes,
        parameters=checkpoint.parameters,
    )


async def list_tags(request: Request, _: Principal = _models) -> dict[str, Any]:
    model = await served_model(request)
    settings = get_settings(request)
    payload = models.tags_payload(registry(request).listed_names(), model,
                                  settings.quantization_label)
    if settings.embedding_upstream_url is not None:
        payload["models"].append(models.embedding_tag(settings.embedding_model_name))
    return payload


async def show(request: Request, _: Principal = _models) -> dict[str, Any]:
    body = parse_body(ShowRequest, await request.body())
    preset = registry(request).preset(body.target)
    model = await served_model(request)
    named = (models.normalize(body.target), preset) if preset is not None else None
    return models.show_payload(model, get_settings(request).quantization_label, named)


async def ps(request: Request, _: Principal = _models) -> dict[str, Any]:
    model = await served_model(request)
    name = registry(request).display_name
    label = get_settings(request).quantization_label
    return models.ps_payload(name, model, label, models.gpu_memory_used())


async def copy(request: Request, _: Principal = _admin) -> Response:
    body = parse_body(CopyRequest, await request.body())
    registry(request).copy(body.source, body.destination)
    return Response(status_code=200)


async def delete(request: Request, _: Principal = _admin) -> Response:
    body = parse_body(DeleteRequest, await request.body())
    registry(request).delete(body.target)
    return Response(status_code=200)


def _pull_progress(model: models.ServedModel) -> Iterator[dict[str, Any]]:
    yield {"status": "pulling manifest"}
    yield {
        "status": f"pulling {model.digest[7:19]}",
        "digest": model.digest,
        "total": model.size_bytes,
        "completed": model.size_bytes,
    }
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    yield {"status": "success"}


async def pull(request: Request, _: Principal = _admin) -> Response:
    body = parse_body(PullRequest, await request.body())
    names = ", ".join(registry(request).listed_names())
    try:
        registry(request).resolve(body.target)
    except NotFound:
        raise NotFound(
            f"model '{body.target}' is not available: this deployment serves a fixed "
            f"model ({names}) and does not download others"
        ) from None
    model = await served_model(request)
    if not body.stream:
        return JSONResponse({"status": "success"})
    lines = (json.dumps(p).encode() + b"\n" for p in _pull_progress(model))
    return StreamingResponse(lines, media_type="application/x-ndjson")


async def push(request: Request, _: Principal = _admin) -> Response:
    parse_body(PushRequest, await request.body())
    raise BadRequest(
        "pushing models is not supported: this deployment serves a fixed model "
        "and has no registry to push to"
    )


async def create(request: Request, _: Principal = _admin) -> Response:
    """A preset over the served weights from a Modelfile (or its JSON fields)."""
    body = parse_body(CreateRequest, await request.body())
    name = body.target
    spec = modelfile.spec_from_create(body)
    modelfile.check_refusals(spec)
    reg = registry(request)
    base = spec.base or ""
    try:
        parent = reg.preset(base)
    except NotFound:
        raise BadRequest(
            f"cannot create '{name}' from '{base}': that model is not served here. This "
            f"deployment serves one fixed model; FROM must name it ({reg.display_name}) or "
            "one of its aliases or presets",
            param="from",
        ) from None
    spec.base = models.normalize(base)
    reg.save_preset(name, modelfile.build_preset(spec, parent, created=int(time.time())))
    if not body.stream:
        return JSONResponse({"status": "success"})
    steps = ("reading model metadata", "creating preset layer", "writing manifest", "success")
    lines = (json.dumps({"status": step}).encode() + b"\n" for step in steps)
    return StreamingResponse(lines, media_type="application/x-ndjson")


def add_model_routes(router: APIRouter) -> None:
    router.add_api_route("/api/tags", list_tags, methods=["GET"], summary="List model names")
    router.add_api_route("/api/show", show, methods=["POST"], summary="Describe the model")
    router.add_api_route("/api/ps", ps, methods=["GET"], summary="The loaded model")
    # Ollama answers both with 200 and an empty body; the schema says so (no JSON content).
    empty_ok: dict[int | str, dict[str, Any]] = {
        200: {"description": "Done (empty body, as Ollama answers)"}}
    router.add_api_route("/api/copy", copy, methods=["POST"], summary="Create an alias",
                         response_class=Response, responses=empty_ok)
    router.add_api_route("/api/delete", delete, methods=["DELETE"], summary="Delete an alias",
                         response_class=Response, responses=empty_ok)
    router.add_api_route("/api/pull", pull, methods=["POST"], summary="Pull (served model only)",
                         responses={200: {"content": {"application/json": {},
                                                      "application/x-ndjson": {}}}})
    router.add_api_route("/api/push", push, methods=["POST"], summary="Refused: no registry")
    router.add_api_route("/api/create", create, methods=["POST"],
                         summary="Create a preset (Modelfile over the served model)",
                         responses={200: {"content": {"application/json": {},
                                                      "application/x-ndjson": {}}}})
