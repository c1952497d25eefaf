"""Anthropic Messages API (`/v1/messages`): passed through to vLLM, which serves it itself
(gpt-oss's reasoning comes back as `thinking` blocks).

The same request path as the OpenAI routes (`serving.protocols.openai.routes.forward`):
the key (the anthropic SDK sends it as `x-api-key`), the `chat` permission, the per-key
limits, token accounting (Anthropic's `usage.input_tokens`/`output_tokens`, in the answer
or in the stream's
`message_delta` event) and the stream relayed event by event, untouched. Errors the sidecar
writes here take Anthropic's shape (`{"type": "error", "error": {type, message}}`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from serving.errors import ANTHROPIC, dialect_route
from serving.protocols.openai.routes import OpenAIRequest, PassThrough, forward
from serving.sidecar.interface import Call, work


class MessagesRequest(OpenAIRequest):
    """Only what the sidecar itself looks at (model, stream, messages); every other field
    goes to vLLM untouched."""

    messages: list[dict[str, Any]]


Chat = Annotated[Call, Depends(work("chat"))]


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Anthropic"], route_class=dialect_route(ANTHROPIC),
                       responses=ANTHROPIC.responses())

    PassThrough("/v1/messages", MessagesRequest, "chat",
                "Anthropic Messages (streaming or not; thinking blocks)").add_to(router)

    @router.post("/messages/count_tokens", summary="Count the input tokens of a Messages request")
    async def count_tokens(
        request: Request, call: Chat, body: MessagesRequest = Body(...)
    ) -> Response:
        # Never streamed: a `stream` field is not part of this request and is dropped.
        counted = MessagesRequest.model_validate(body.model_dump(exclude={"stream"}))
        return await forward(request, call, "/v1/messages/count_tokens", counted,
                             alias_reasoning=False)

    return router
