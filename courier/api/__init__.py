"""The REST API: native /v1 routes, health, metrics, OpenAPI."""

from courier.api.app import create_app

__all__ = ["create_app"]
