"""The API's OpenAPI document and its `/docs` page (Swagger UI served from the package)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logsieve.api.queries import ACCEPTED_PARAMETERS

if TYPE_CHECKING:
    pass


#: The files of the swagger-ui-bundle package that /docs loads, and all that is served of it.
DOCS_ASSETS = ("swagger-ui.css", "favicon-32x32.png", "swagger-ui-bundle.js")


def docs_page(root_path: str = "") -> str:
    """Swagger UI wired to our own assets and document: it loads nothing from the network."""
    assets = f"{root_path}/docs/assets"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>logsieve API</title>
<link rel="stylesheet" href="{assets}/{DOCS_ASSETS[0]}">
<link rel="icon" type="image/png" href="{assets}/{DOCS_ASSETS[1]}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/{DOCS_ASSETS[2]}"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{root_path}/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of every endpoint, parameter and response."""
    from logsieve import __version__

    def json_content(schema_ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}

    error_400 = {
        "description": "An unknown or malformed query parameter; the body names it.",
        "content": json_content("ParameterError"),
    }
    from logsieve.api.dashboard import openapi_paths, openapi_schemas

    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "logsieve API",
            "version": __version__,
            "description": "Questions about the clean log table (Delta Lake, by date).",
        },
        "paths": {
            "/logins_today": {
                "get": {
                    "operationId": "loginsToday",
                    "summary": "Count logins on one day",
                    "description": (
                        "Rows whose action is `login` and whose event time falls on the given "
                        "day in the given time zone (by default: today, UTC), counted in one "
                        "committed version of the Delta table, at most about a second old. "
                        "Reads only the one or two UTC date partitions that day touches."
                    ),
                    "parameters": [
                        {
                            "name": "date",
                            "in": "query",
                            "required": False,
                            "description": ACCEPTED_PARAMETERS["date"],
                            "schema": {"type": "string", "format": "date"},
                            "example": "2025-08-20",
                        },
                        {
                            "name": "tz",
                            "in": "query",
                            "required": False,
                            "description": ACCEPTED_PARAMETERS["tz"],
                            "schema": {"type": "string", "default": "UTC"},
                            "example": "Europe/Berlin",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The count for that day.",
                            "content": json_content("LoginsToday"),
                        },
                        "400": error_400,
                        "503": {
                            "description": "The table's log or a data file could not be read.",
                            "content": json_content("Error"),
                        },
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness check",
                    "description": (
                        "Whether the latest snapshot of the table could be loaded: the log is "
                        "reachable and readable, and the table exists."
                    ),
                    "responses": {
                        "200": {
                            "description": "The snapshot is loaded; its version.",
                            "content": json_content("Ready"),
                        },
                        "503": {
                            "description": (
                                "Not ready: storage unreachable, a corrupt log, or no table yet."
                            ),
                            "content": json_content("NotReady"),
                        },
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness check",
                    "responses": {
                        "200": {
                            "description": "The server is up.",
                            "content": json_content("Health"),
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This OpenAPI document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/docs": {
                "get": {
                    "operationId": "docs",
                    "summary": "Interactive documentation (Swagger UI, served locally)",
                    "responses": {
                        "200": {
                            "description": "An HTML page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "LoginsToday": {
                    "type": "object",
                    "required": ["logins_today", "date", "tz"],
                    "properties": {
                        "logins_today": {"type": "integer", "minimum": 0},
                        "date": {"type": "string", "format": "date"},
                        "tz": {"type": "string", "description": "The zone the day is in."},
                        "version": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "The table version counted (absent without a table).",
                        },
                        "note": {
                            "type": "string",
                            "description": "Present when there is no table yet (count 0).",
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ok"]}},
                },
                "Ready": {
                    "type": "object",
                    "required": ["status", "version"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ready"]},
                        "version": {"type": "integer", "minimum": 0},
                    },
                },
                "NotReady": {
                    "type": "object",
                    "required": ["status", "error"],
                    "properties": {
                        "status": {"type": "string", "enum": ["not ready"]},
                        "error": {"type": "string", "description": "Why, in one line."},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "ParameterError": {
                    "type": "object",
                    "required": ["error", "parameter", "accepted"],
                    "properties": {
                        "error": {"type": "string"},
                        "parameter": {"type": "string", "description": "The parameter at fault."},
                        "accepted": {"type": "string", "description": "What it accepts."},
                    },
                },
            }
        },
    }
    document["paths"].update(openapi_paths())
    document["components"]["schemas"].update(openapi_schemas())
    return document
