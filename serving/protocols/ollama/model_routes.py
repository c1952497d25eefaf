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
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from serving.errors import (
    BadRequest,
    NotFound,
    UpstreamUnavailable,
)
from serving.protocols.names import model_names
from serving.protocols.ollama import modelfile as modelfile
from serving.protocols.ollama import models as models
from serving.protocols.ollama.types import (
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    PullRequest,
    PushRequest,
    ShowRequest,
    openapi_body,
    parse_body,
)
from serving.sidecar.interface import Call, work
from serving.upstream import open_upstream, read_and_close

Models = Annotated[Call, Depends(work("models"))]
Admin = Annotated[Call, Depends(work("admin"))]


@dataclass
class OllamaState:
    """State of one Ollama router (made by its `build_router`): caches of facts that do not
    change while the app lives, and the options already reported as ignored."""

    checkpoints: dict[str, models.Checkpoint] = field(default_factory=dict)
    max_model_len: int | None = None
    logged_options: set[str] = field(default_factory=set)


async def served_model(call: Call, state: OllamaState) -> models.ServedModel:
    """The served model as vLLM describes it now (503 when vLLM does not answer)."""
    upstream = await open_upstream(call.upstream, "GET", "/v1/models", headers=call.trace_headers)
    raw = await read_and_close(upstream)
    cards = json.loads(raw).get("data") if upstream.status_code == 200 else None
    if not cards:
        raise UpstreamUnavailable(
            f"The engine did not list its model (HTTP {upstream.status_code})."
        )
    card = cards[0]
    root = str(card.get("root") or card["id"])
    if root not in state.checkpoints:
        state.checkpoints[root] = models.read_checkpoint(root, call.settings.model_family)
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


class OllamaModelRoutes:
    """The model-management routes; one instance per router, sharing the router's state."""

    def __init__(self, state: OllamaState) -> None:
        self.state = state

    async def list_tags(self, call: Models) -> dict[str, Any]:
        model = await served_model(call, self.state)
        settings = call.settings
        payload = models.tags_payload(model_names(call.settings).listed_names(), model,
                                      settings.quantization_label)
        if settings.embedding_upstream_url is not None:
            payload["models"].append(models.embedding_tag(settings.embedding_model_name))
        return payload

    async def show(self, request: Request, call: Models) -> dict[str, Any]:
        body = parse_body(ShowRequest, await request.body())
        preset = model_names(call.settings).preset(body.target)
        model = await served_model(call, self.state)
        named = (models.normalize(body.target), preset) if preset is not None else None
        return models.show_payload(model, call.settings.quantization_label, named)

    async def ps(self, call: Models) -> dict[str, Any]:
        model = await served_model(call, self.state)
        name = model_names(call.settings).display_name
        label = call.settings.quantization_label
        return models.ps_payload(name, model, label, await models.gpu_memory_in_use())

    async def copy(self, request: Request, call: Admin) -> Response:
        body = parse_body(CopyRequest, await request.body())
        model_names(call.settings).copy(body.source, body.destination)
        return Response(status_code=200)

    async def delete(self, request: Request, call: Admin) -> Response:
        body = parse_body(DeleteRequest, await request.body())
        model_names(call.settings).delete(body.target)
        return Response(status_code=200)

    @staticmethod
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

    async def pull(self, request: Request, call: Admin) -> Response:
        body = parse_body(PullRequest, await request.body())
        names = ", ".join(model_names(call.settings).listed_names())
        try:
            model_names(call.settings).resolve(body.target)
        except NotFound:
            raise NotFound(
                f"model '{body.target}' is not available: this deployment serves a fixed "
                f"model ({names}) and does not download others"
            ) from None
        model = await served_model(call, self.state)
        if not body.stream:
            return JSONResponse({"status": "success"})
        lines = (json.dumps(p).encode() + b"\n" for p in self._pull_progress(model))
        return StreamingResponse(lines, media_type="application/x-ndjson")

    async def push(self, request: Request, call: Admin) -> Response:
        parse_body(PushRequest, await request.body())
        raise BadRequest(
            "pushing models is not supported: this deployment serves a fixed model "
            "and has no registry to push to"
        )

    async def create(self, request: Request, call: Admin) -> Response:
        """A preset over the served weights from a Modelfile (or its JSON fields)."""
        body = parse_body(CreateRequest, await request.body())
        name = body.target
        spec = modelfile.spec_from_create(body)
        modelfile.check_refusals(spec)
        reg = model_names(call.settings)
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


def add_model_routes(router: APIRouter, state: OllamaState) -> None:
    routes = OllamaModelRoutes(state)
    streamed: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/json": {}, "application/x-ndjson": {}}}}
    router.add_api_route("/api/tags", routes.list_tags, methods=["GET"],
                         summary="List model names")
    router.add_api_route("/api/show", routes.show, methods=["POST"], summary="Describe the model",
                         openapi_extra=openapi_body(ShowRequest))
    router.add_api_route("/api/ps", routes.ps, methods=["GET"], summary="The loaded model")
    # Ollama answers both with 200 and an empty body; the schema says so (no JSON content).
    empty_ok: dict[int | str, dict[str, Any]] = {
        200: {"description": "Done (empty body, as Ollama answers)"}}
    router.add_api_route("/api/copy", routes.copy, methods=["POST"], summary="Create an alias",
                         response_class=Response, responses=empty_ok,
                         openapi_extra=openapi_body(CopyRequest))
    router.add_api_route("/api/delete", routes.delete, methods=["DELETE"],
                         summary="Delete an alias", response_class=Response, responses=empty_ok,
                         openapi_extra=openapi_body(DeleteRequest))
    router.add_api_route("/api/pull", routes.pull, methods=["POST"],
                         summary="Pull (served model only)", responses=streamed,
                         openapi_extra=openapi_body(PullRequest))
    router.add_api_route("/api/push", routes.push, methods=["POST"],
                         summary="Refused: no registry", openapi_extra=openapi_body(PushRequest))
    router.add_api_route("/api/create", routes.create, methods=["POST"],
                         summary="Create a preset (Modelfile over the served model)",
                         responses=streamed, openapi_extra=openapi_body(CreateRequest))
