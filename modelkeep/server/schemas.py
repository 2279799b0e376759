"""Wire shapes of the routes that are not plain Registry operations (pydantic models).

Registry records travel in the form ``registry/wire.py`` gives them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorDetail", "ErrorBody", "UploadCreate", "UploadOpened", "WebhookCreate", "WebhookOut", "DeliveryOut", "WhoAmI"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class UploadCreate(_Strict):
    name: str = Field(max_length=129)


class UploadOpened(BaseModel):
    id: str


class WebhookCreate(_Strict):
    url: str = Field(max_length=2048)
    events: list[str] = Field(min_length=1)
    namespace: str = Field(default="*", max_length=64)
    secret: str | None = Field(default=None, min_length=16, max_length=128)


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    namespace: str
    created_at: datetime
    created_by: str
    secret: str | None = None  # only in the answer that creates the subscription


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event_id: str
    event: str
    attempt: int
    ok: bool
    status_code: int | None
    error: str | None
    at: datetime


class WhoAmI(BaseModel):
    user: str
    grants: dict[str, str]
    auth: bool
