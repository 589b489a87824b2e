"""MCP server rules: register, list, change, remove. No HTTP objects, never a commit.

The headers are encrypted with the newest SECRETS_ENCRYPTION_KEYS key before they reach the
session, and nothing this service returns or audits carries their values. A server without
headers needs no encryption key. The URL is checked against the deployment's MCP policy when
saved (plain http, literal private addresses); host names are checked on every connection.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.service import entity_tag, precondition_holds
from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, ServiceUnavailable
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.mcp.connect import McpEgress, McpEndpoint
from agentkeep.mcp.models import McpServer
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.mcp.schemas import HeadersStatus, McpServerCreate, McpServerUpdate
from agentkeep.orgs.service import OrgNotFound
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError

IDEMPOTENCY_SCOPE = "mcp_servers.create"
# Fields whose change makes the cached tool list stale: it may name another server's tools.
CONNECTION_FIELDS = frozenset({"url", "transport", "headers"})


class McpServerNotFound(NotFound):
    title = "MCP server not found"


class McpServerNameTaken(Conflict):
    type_slug = "mcp-server-name-taken"
    title = "MCP server name taken"


class McpServerVersionMismatch(PreconditionFailed):
    type_slug = "mcp-server-version-mismatch"
    title = "MCP server version mismatch"


class EncryptionNotConfigured(ServiceUnavailable):
    type_slug = "encryption-not-configured"
    title = "Secrets encryption is not configured"

    def __init__(self) -> None:
        super().__init__(
            "MCP server headers are stored encrypted, and this server has no encryption key: "
            "set SECRETS_ENCRYPTION_KEYS (generate a key with `agentkeep gen-secret "
            "--encryption-key`) and restart."
        )


class McpHeadersUnreadable(ServiceUnavailable):
    type_slug = "mcp-headers-unreadable"
    title = "MCP server headers unreadable"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The stored headers of MCP server {name!r} cannot be decrypted with any key in "
            "SECRETS_ENCRYPTION_KEYS (was the key that encrypted them removed?). Put that key "
            "back in the list, or set the server's headers again.",
            extra={"mcp_server": name},
        )


@dataclass(frozen=True, slots=True)
class McpActor:
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    api_key_id: uuid.UUID | None = None

    @property
    def principal(self) -> str:
        """Whose idempotency keys these are: keys of different callers never meet."""
        return f"api_key:{self.api_key_id}" if self.api_key_id is not None else f"user:{self.user_id}"


@dataclass(frozen=True, slots=True)
class CreatedServer:
    server: McpServer
    # True: an earlier request with the same Idempotency-Key and body created it.
    replayed: bool


def headers_status(secretbox: SecretBox | None, server: McpServer) -> HeadersStatus:
    if server.headers_ciphertext is None:
        return HeadersStatus.NONE
    if secretbox is None:
        return HeadersStatus.NO_ENCRYPTION_KEY
    try:
        secretbox.decrypt(server.headers_ciphertext)
    except SecretDecryptionError:
        return HeadersStatus.UNREADABLE
    return HeadersStatus.OK


def decrypt_headers(secretbox: SecretBox | None, server: McpServer) -> dict[str, str]:
    """The server's headers; a 503 problem naming the cause when they cannot be read."""
    if server.headers_ciphertext is None:
        return {}
    if secretbox is None:
        raise EncryptionNotConfigured()
    try:
        headers: dict[str, str] = json.loads(secretbox.decrypt(server.headers_ciphertext))
    except SecretDecryptionError:
        raise McpHeadersUnreadable(server.name) from None
    return headers


def endpoint_of(secretbox: SecretBox | None, server: McpServer) -> McpEndpoint:
    return McpEndpoint(
        name=server.name,
        url=server.url,
        transport=server.transport,
        headers=decrypt_headers(secretbox, server),
        timeout_seconds=server.timeout_seconds,
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _request_fingerprint(body: McpServerCreate) -> str:
    """What identifies a create for Idempotency-Key: every field but the header values,
    which are never stored outside their encrypted column (not even hashed)."""
    document = body.model_dump(mode="json", exclude={"headers"})
    document["header_names"] = sorted(body.headers)
    return fingerprint(document)


class McpServerService:
    def __init__(
        self, session: AsyncSession, audit: AuditService, secretbox: SecretBox | None, egress: McpEgress
    ) -> None:
        self.repository = McpServerRepository(session)
        self.idempotency = IdempotencyStore(session)
        self.audit = audit
        self.secretbox = secretbox
        self.egress = egress

    def status_of(self, server: McpServer) -> HeadersStatus:
        return headers_status(self.secretbox, server)

    async def create(
        self, actor: McpActor, org_id: uuid.UUID, body: McpServerCreate, idempotency_key: str | None
    ) -> CreatedServer:
        org_id = self.current_org(actor, org_id)
        self.egress.check_url(body.url)
        ciphertext = self._encrypt(body.headers)
        server_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(org_id, actor.principal, IDEMPOTENCY_SCOPE)
            earlier = await self.idempotency.claim(
                scope, idempotency_key, _request_fingerprint(body), server_id
            )
            if earlier is not None:
                return CreatedServer(await self._replayed(org_id, earlier), replayed=True)
        if await self.repository.name_taken(org_id, body.name):
            raise _name_taken(body.name)
        now = datetime.now(UTC)
        server = McpServer(
            id=server_id,
            org_id=org_id,
            created_by=actor.user_id,
            name=body.name,
            url=body.url,
            transport=body.transport,
            headers_ciphertext=ciphertext,
            header_names=list(body.headers),
            timeout_seconds=body.timeout_seconds,
            enabled=body.enabled,
            version=1,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.repository.add(server)
        except IntegrityError:
            # A concurrent create took the name between the check and the insert.
            raise _name_taken(body.name) from None
        await self._record(AuditAction.MCP_SERVER_CREATED, actor, server, _described(server))
        return CreatedServer(server, replayed=False)

    async def page(
        self, actor: McpActor, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[McpServer], str | None]:
        return await self.repository.page_in_org(self.current_org(actor, org_id), limit, cursor)

    async def get(self, actor: McpActor, org_id: uuid.UUID, server_id: uuid.UUID) -> McpServer:
        server = await self.repository.get_in_org(self.current_org(actor, org_id), server_id)
        if server is None:
            raise McpServerNotFound("No such MCP server.")
        return server

    async def update(
        self,
        actor: McpActor,
        org_id: uuid.UUID,
        server_id: uuid.UUID,
        patch: McpServerUpdate,
        if_match: str | None,
    ) -> McpServer:
        """Apply a partial change; a change that changes nothing writes nothing."""
        server = await self._locked(actor, org_id, server_id, if_match)
        given = patch.model_fields_set
        changed: list[str] = []
        if patch.url is not None and patch.url != server.url:
            self.egress.check_url(patch.url)
            if (
                server.headers_ciphertext is not None
                and _origin(patch.url) != _origin(server.url)
                and patch.headers is None
            ):
                raise InvalidInput(
                    "Moving the server to another origin needs its headers again in the same "
                    "request (`headers`, or `{}` for none): stored credentials never go to a "
                    "server their writer did not choose.",
                    extra={"field": "headers"},
                )
            server.url = patch.url
            changed.append("url")
        if patch.name is not None and patch.name != server.name:
            if await self.repository.name_taken(server.org_id, patch.name):
                raise _name_taken(patch.name)
            server.name = patch.name
            changed.append("name")
        for field in ("transport", "timeout_seconds", "enabled"):
            value = getattr(patch, field)
            if field in given and value is not None and value != getattr(server, field):
                setattr(server, field, value)
                changed.append(field)
        if patch.headers is not None:
            # Always rewritten when given: whether the values changed is not ours to compare.
            server.headers_ciphertext = self._encrypt(patch.headers)
            server.header_names = list(patch.headers)
            changed.append("headers")
        if not changed:
            return server
        if CONNECTION_FIELDS.intersection(changed):
            server.tools = None
            server.tools_discovered_at = None
        server.version += 1
        server.updated_at = datetime.now(UTC)
        try:
            await self.repository.add(server)
        except IntegrityError:
            raise _name_taken(server.name) from None
        await self._record(
            AuditAction.MCP_SERVER_UPDATED, actor, server, {**_described(server), "changed": changed}
        )
        return server

    async def delete(
        self, actor: McpActor, org_id: uuid.UUID, server_id: uuid.UUID, if_match: str | None
    ) -> None:
        server = await self._locked(actor, org_id, server_id, if_match)
        await self.repository.delete(server)
        await self._record(
            AuditAction.MCP_SERVER_DELETED, actor, server, {"name": server.name, "url": server.url}
        )

    async def _locked(
        self, actor: McpActor, org_id: uuid.UUID, server_id: uuid.UUID, if_match: str | None
    ) -> McpServer:
        org_id = self.current_org(actor, org_id)
        server = await self.repository.get_in_org(org_id, server_id, for_update=True)
        if server is None:
            raise McpServerNotFound("No such MCP server.")
        if if_match is not None and not precondition_holds(if_match, server.version):
            raise McpServerVersionMismatch(
                f"If-Match does not name the current version ({entity_tag(server.version)}); "
                "read the server again and retry.",
                headers={"ETag": entity_tag(server.version)},
                extra={"current_version": server.version},
            )
        return server

    async def _replayed(self, org_id: uuid.UUID, server_id: uuid.UUID) -> McpServer:
        server = await self.repository.get_in_org(org_id, server_id)
        if server is None:
            raise Conflict(
                "The MCP server created with this Idempotency-Key has since been deleted; use a new key.",
                extra={"resource_id": str(server_id)},
            )
        return server

    @staticmethod
    def current_org(actor: McpActor, org_id: uuid.UUID) -> uuid.UUID:
        """Only the caller's current organization exists here: any other id answers 404."""
        if actor.org_id is None or org_id != actor.org_id:
            raise OrgNotFound("No such organization.")
        return org_id

    def _encrypt(self, headers: dict[str, SecretStr]) -> str | None:
        if not headers:
            return None
        if self.secretbox is None:
            raise EncryptionNotConfigured()
        plain = {name: value.get_secret_value() for name, value in headers.items()}
        return self.secretbox.encrypt(json.dumps(plain, separators=(",", ":")))

    async def _record(
        self, action: AuditAction, actor: McpActor, server: McpServer, details: dict[str, Any]
    ) -> None:
        if actor.api_key_id is not None:
            details = {**details, "key_id": str(actor.api_key_id)}  # "api_key_id" is redacted by name
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=server.org_id,
            actor_type=ActorType.API_KEY if actor.api_key_id is not None else ActorType.USER,
            resource_type="mcp_server",
            resource_id=server.id,
            details=details,
        )


def _described(server: McpServer) -> dict[str, Any]:
    """What the audit trail keeps of a server: everything but the header values."""
    return {
        "name": server.name,
        "url": server.url,
        "transport": server.transport,
        "header_names": list(server.header_names),
        "timeout_seconds": server.timeout_seconds,
        "enabled": server.enabled,
        "version": server.version,
    }


def _name_taken(name: str) -> McpServerNameTaken:
    return McpServerNameTaken(
        "An MCP server with this name exists in the organization.", extra={"field": "name", "name": name}
    )
