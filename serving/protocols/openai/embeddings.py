"""`/v1/embeddings`, answered by the companion embedding engine
(see serving.protocols.embedding_engine)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict

from serving.errors import OPENAI, dialect_route
from serving.protocols.embedding_engine import (
    call_engine,
    embedding_model_for,
    record_prompt_tokens,
)
from serving.sidecar.interface import Call, work


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] | list[int] | list[list[int]]


def build_router() -> APIRouter:
    router = APIRouter(tags=["OpenAI"], route_class=dialect_route(OPENAI),
                       responses=OPENAI.responses())

    @router.post("/embeddings", summary="Embeddings (companion model)")
    async def openai_embeddings(
        call: Annotated[Call, Depends(work("embeddings"))],
        body: OpenAIEmbeddingRequest = Body(...),
    ) -> Response:
        payload = body.model_dump(exclude_unset=True)
        payload["model"] = embedding_model_for(call, body.model)
        upstream = await call_engine(call, payload)
        if upstream.status_code == 200:
            record_prompt_tokens(call, upstream.json())
        return Response(upstream.content, upstream.status_code, media_type="application/json")

    return router
