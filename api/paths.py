"""Path parameters shared by the blueprints: UUID ids, validated into the same 422 problem marshmallow
gives for a bad body, and described once for OpenAPI."""

from __future__ import annotations

import uuid
from typing import Any

from api.errors import VALIDATION_ERROR, Problem


def invalid(location: str, field: str, message: str) -> Problem:
    """A 422 shaped like marshmallow's own validation problems."""
    return Problem(
        422,
        title="Request validation failed",
        type=VALIDATION_ERROR,
        detail="One or more request fields are invalid; see errors.",
        extensions={"errors": {location: {field: [message]}}},
    )


def path_id(name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid("path", name, "Not a valid UUID.") from None


def uuid_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string", "format": "uuid"},
    }
