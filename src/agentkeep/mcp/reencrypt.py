"""Re-encrypt every stored MCP server's headers under the newest SECRETS_ENCRYPTION_KEYS key
(part of `agentkeep providers reencrypt`, which rewrites every stored secret; the pass itself
is agentkeep.secret_rotation's)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import AuditAction
from agentkeep.mcp.models import McpServer
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.secret_rotation import RotationReport, RowKind, rotate_rows
from agentkeep.security.secretbox import SecretBox


@dataclass(frozen=True, slots=True)
class UnreadableMcpServer:
    org_id: uuid.UUID
    server_id: uuid.UUID
    name: str


McpReencryptReport = RotationReport[UnreadableMcpServer]


async def _with_headers(session: AsyncSession, server_id: uuid.UUID) -> McpServer | None:
    server = await McpServerRepository(session).locked(server_id)
    return server if server is not None and server.headers_ciphertext is not None else None


async def reencrypt_mcp_headers(
    sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox
) -> McpReencryptReport:
    """Headers no configured key decrypts are left unchanged and reported."""

    def rotate(server: McpServer) -> None:
        assert server.headers_ciphertext is not None  # servers without headers are skipped
        server.headers_ciphertext = secretbox.rotate(server.headers_ciphertext)

    kind = RowKind[McpServer, UnreadableMcpServer](
        ids=lambda session: McpServerRepository(session).all_ids(),
        locked=_with_headers,
        rotate=rotate,
        action=AuditAction.MCP_SERVER_UPDATED,
        resource_type="mcp_server",
        details=lambda server: {"name": server.name},
        unreadable=lambda server: UnreadableMcpServer(server.org_id, server.id, server.name),
    )
    return await rotate_rows(sessionmaker, kind)
