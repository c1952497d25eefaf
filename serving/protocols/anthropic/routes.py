"""Anthropic Messages API (`/v1/messages`): passed through to vLLM, which serves it itself
(gpt-oss's reasoning comes back as `thinking` blocks).

The same request path as the OpenAI routes (`openai_routes.forward`): the key (the anthropic
SDK sends it as `x-api-key`), the `chat` permission, the per-key limits, token accounting
(Anthropic's `usage.input_tokens`/`output_tokens`, in the answer or in the stream's
`message_delta` event) and the stream relayed event by event, untouched. Errors the sidecar
writes here take Anthropic's shape (`{"type": "error", "error": {type, message}}`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response

from serving.errors import error_responses
from serving.protocols.openai.routes import _OpenAIRequest, forward
from serving.sidecar.deps import Principal, require


class MessagesRequest(_OpenAIRequest):
    """Only what the sidecar itself looks at (model, stream, messages); every other field
    goes to vLLM untouched."""

    messages: list[dict[str, Any]]


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Anthropic"], responses=error_responses("anthropic"))

    @router.post("/messages", responses=_STREAMED,
                 summary="Anthropic Messages (streaming or not; thinking blocks)")
    async def messages(
        request: Request,
        body: MessagesRequest = Body(...),
        _: Principal = Depends(require("chat")),
    ) -> Response:
        return await forward(request, "/v1/messages", body, alias_reasoning=False)

    @router.post("/messages/count_tokens", summary="Count the input tokens of a Messages request")
    async def count_tokens(
        request: Request,
        body: MessagesRequest = Body(...),
        _: Principal = Depends(require("chat")),
    ) -> Response:
        # Never streamed: a `stream` field is not part of this request and is dropped.
        counted = MessagesRequest.model_validate(body.model_dump(exclude={"stream"}))
        return await forward(request, "/v1/messages/count_tokens", counted,
                             alias_reasoning=False)

    return router
