"""JSON responses, shared by the API's endpoints and the dashboard's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.responses import Response


def json_response(body: Any, status_code: int = 200, headers: Any = None) -> Response:
    """A JSON response serialised by orjson."""
    import orjson
    from starlette.responses import Response

    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def error_response(status_code: int, message: str, headers: Any = None, **fields: str) -> Response:
    """The one error shape every endpoint uses: {"error": ..., plus context fields}."""
    return json_response({"error": message, **fields}, status_code=status_code, headers=headers)
