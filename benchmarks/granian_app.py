"""The sidecar app for granian (`python -m benchmarks.relay --granian` only: a measurement
of the server choice, not a way to run the product)::

    granian --interface asgi --factory benchmarks.granian_app:app --port 8000
"""

from __future__ import annotations

from starlette.types import ASGIApp

from serving.cli import _sidecar_settings
from serving.config import PathSettings
from serving.sidecar.app import create_app


def app() -> ASGIApp:
    return create_app(_sidecar_settings(PathSettings()))
