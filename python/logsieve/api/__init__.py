"""The HTTP API over a clean table: query parsing, the dataset reader and its caches, the
Starlette app, its OpenAPI document, serving, and the dashboard with its indexes and page."""
