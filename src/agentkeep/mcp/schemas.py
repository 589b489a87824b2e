"""Bodies of /api/orgs/{org_id}/mcp-servers. Headers are write-only: accepted in create and
update bodies, and only their names appear in responses."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from ipaddress import ip_address
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic_core import PydanticCustomError

from agentkeep.mcp.models import MCP_SERVER_NAME_MAX, MCP_URL_MAX
from agentkeep.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorParam
from agentkeep.tools.netguard import METADATA_HOSTNAMES, normalise_host, refusal_reason

McpTransport = Literal["streamable-http", "sse"]
DEFAULT_TRANSPORT: McpTransport = "streamable-http"
TIMEOUT_SECONDS = (1.0, 120.0)
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_HEADERS = 16
HEADER_NAME_MAX = 100
HEADER_VALUE_MAX = 4096
# RFC 9110 field-name token.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the HTTP client or the MCP protocol sets itself: a configured value would break the
# connection or impersonate the protocol, so they cannot be configured.
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def check_server_url(raw: str) -> str:
    """An absolute http(s) URL without credentials, query or fragment, whose host is not a
    metadata, unspecified or multicast target.

    Whether plain http and a private address are acceptable depends on the deployment
    (ENVIRONMENT, MCP_ALLOWED_NETWORKS); the service decides that.
    """
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise PydanticCustomError("invalid_url", "is not a URL") from None
    if url.scheme not in ("http", "https") or not url.is_absolute_url or not url.host:
        raise PydanticCustomError("invalid_url", "must be an absolute https:// URL")
    if url.userinfo:
        raise PydanticCustomError("invalid_url", "must not contain credentials; send them as headers")
    if url.query or url.fragment or "?" in raw or "#" in raw:
        raise PydanticCustomError(
            "invalid_url", "must not have a query or fragment (send credentials as headers)"
        )
    host = normalise_host(url.host)
    try:
        literal = ip_address(host)
    except ValueError:
        literal = None
    if host in METADATA_HOSTNAMES or (
        literal is not None and (reason := refusal_reason(literal)) is not None and not reason[1]
    ):
        raise PydanticCustomError("invalid_url", "names a metadata, unspecified or multicast address")
    return str(url)


def check_headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Header names are tokens, unique ignoring case, none reserved; values are one line of
    visible ASCII (and spaces). Errors name the header, never its value."""
    seen: set[str] = set()
    for name, value in headers.items():
        lowered = name.lower()
        if not HEADER_NAME.match(name) or len(name) > HEADER_NAME_MAX:
            raise PydanticCustomError(
                "invalid_header_name", "{name!r} is not a header name", {"name": name[:HEADER_NAME_MAX]}
            )
        if lowered in RESERVED_HEADERS:
            raise PydanticCustomError(
                "reserved_header", "{name} is set by the HTTP client or the MCP protocol", {"name": name}
            )
        if lowered in seen:
            raise PydanticCustomError("duplicate_header", "{name} is given twice", {"name": name})
        seen.add(lowered)
        secret = value.get_secret_value()
        if not 1 <= len(secret) <= HEADER_VALUE_MAX:
            raise PydanticCustomError(
                "invalid_header_value",
                "the value of {name} must be 1 to {max} characters",
                {"name": name, "max": HEADER_VALUE_MAX},
            )
        if not secret.isascii() or not secret.isprintable() or secret != secret.strip():
            raise PydanticCustomError(
                "invalid_header_value",
                "the value of {name} must be one line of visible ASCII characters",
                {"name": name},
            )
    return headers


ServerUrl = Annotated[str, Field(min_length=8, max_length=MCP_URL_MAX), AfterValidator(check_server_url)]
ServerName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MCP_SERVER_NAME_MAX,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Unique in the organization; agents name its tools `mcp:<name>/<tool>`.",
    ),
]
Headers = Annotated[
    dict[Annotated[str, Field(max_length=HEADER_NAME_MAX)], SecretStr],
    Field(
        max_length=MAX_HEADERS,
        description="Write-only: sent with every request to the server, stored encrypted, never returned.",
    ),
    AfterValidator(check_headers),
]
TimeoutSeconds = Annotated[
    float,
    Field(
        ge=TIMEOUT_SECONDS[0],
        le=TIMEOUT_SECONDS[1],
        description="Bound on connecting to the server and on each request to it.",
    ),
]


class McpServerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ServerName
    url: ServerUrl = Field(description="The server's MCP endpoint, e.g. https://tools.example.com/mcp.")
    transport: McpTransport = DEFAULT_TRANSPORT
    headers: Headers = Field(default_factory=dict)
    timeout_seconds: TimeoutSeconds = DEFAULT_TIMEOUT_SECONDS
    enabled: bool = True


class McpServerUpdate(BaseModel):
    """Change some fields. `headers` replaces the whole set (`{}` removes them all); a new
    `url` on another origin needs `headers` in the same request, so stored credentials never
    go to a server their writer did not choose."""

    model_config = ConfigDict(extra="forbid")

    name: ServerName | None = None
    url: ServerUrl | None = None
    transport: McpTransport | None = None
    headers: Headers | None = None
    timeout_seconds: TimeoutSeconds | None = None
    enabled: bool | None = None


class HeadersStatus(StrEnum):
    OK = "ok"
    NONE = "none"
    # No configured SECRETS_ENCRYPTION_KEYS key decrypts the stored headers.
    UNREADABLE = "unreadable"
    # SECRETS_ENCRYPTION_KEYS is unset on this instance.
    NO_ENCRYPTION_KEY = "no_encryption_key"


class McpServerRead(BaseModel):
    id: uuid.UUID
    name: str
    url: str
    transport: McpTransport
    header_names: list[str] = Field(
        description="The configured headers' names; their values are never shown."
    )
    headers_status: HeadersStatus
    timeout_seconds: float
    enabled: bool
    version: int
    tools_discovered_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class McpServerPage(BaseModel):
    items: list[McpServerRead]
    next_cursor: str | None


class McpServerListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: CursorParam | None = None


class McpToolRead(BaseModel):
    name: str
    description: str | None
    input_schema: dict[str, Any]


class McpToolList(BaseModel):
    server_id: uuid.UUID
    discovered_at: datetime
    items: list[McpToolRead]
