"""The bodies ``payment-api`` answers with, as pydantic models for its OpenAPI document.

``gateway.api`` writes these bodies as plain dicts; the models say what they may hold, and
``gateway.openapi`` publishes their JSON Schemas. Optional fields are left out of a body
when they do not apply, never sent as ``null``; the schemas say so.
"""

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.json_schema import SkipJsonSchema

from handlers.webhooks import Stored
from processors.errors import WebhookRejection

WebhookErrorCode = Literal[
    "rejected",
    "source_not_allowed",
    "unknown_processor",
    "unknown_tenant",
    "too_large",
    "unsupported_media_type",
    "ingestion_paused",
    "unavailable",
]
"""Why a webhook was refused; each code belongs to one HTTP status."""


def _left_out_when_absent(schema: dict[str, JsonValue]) -> None:
    """Drop the ``default: null`` of an optional field: it is left out, never null."""
    schema.pop("default", None)


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebhookAccepted(_Body):
    """A webhook the gateway took: the vendor must not send it again."""

    status: Stored = Field(description="What became of the webhook.")
    event_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The vendor's id of the event; absent when the event was not routed.",
        json_schema_extra=_left_out_when_absent,
    )


class WebhookError(_Body):
    """A refused webhook: nothing was stored. The body the vendor sent is never repeated."""

    error: WebhookErrorCode = Field(
        description="400 rejected; 403 source_not_allowed; 404 unknown_processor or "
        "unknown_tenant; 413 too_large; 415 unsupported_media_type; 503 ingestion_paused "
        "or unavailable (retry later: nothing is lost)."
    )
    detail: str = Field(description="Why, in words, for the vendor's delivery log.")
    reason: WebhookRejection | SkipJsonSchema[None] = Field(
        default=None,
        description="What failed verification; present exactly when rejected.",
        json_schema_extra=_left_out_when_absent,
    )
    limit: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=r"^[0-9]+$",
        description="The body limit in bytes, as a decimal string; present exactly when too_large.",
        json_schema_extra=_left_out_when_absent,
    )

    @model_validator(mode="after")
    def _extras_match_the_error(self) -> Self:
        """``reason`` comes with ``rejected`` only, ``limit`` with ``too_large`` only."""
        if (self.reason is not None) != (self.error == "rejected"):
            raise ValueError("reason is present exactly when the error is rejected")
        if (self.limit is not None) != (self.error == "too_large"):
            raise ValueError("limit is present exactly when the error is too_large")
        return self


class Health(_Body):
    """The process answers (liveness); nothing else is checked."""

    status: Literal["ok"] = Field(description="Always ok.")


class Ready(_Body):
    """Every readiness check passed: the instance may take traffic."""

    status: Literal["ready"] = Field(description="Always ready.")
    checks: list[str] = Field(description="The names of the checks that ran, all fine.")


class Unready(_Body):
    """At least one readiness check failed: keep traffic away from this instance."""

    status: Literal["unready"] = Field(description="Always unready.")
    failures: dict[str, str] = Field(
        description="Each failed check's name -> what is wrong (never a secret)."
    )
