"""Re-encrypt every stored MCP server's headers under the newest SECRETS_ENCRYPTION_KEYS key
(part of `agentkeep providers reencrypt`, which rewrites every stored secret)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import record
from agentkeep.context import RequestContext
from agentkeep.mcp.repository import McpServerRepository
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError


@dataclass(frozen=True, slots=True)
class UnreadableMcpServer:
    org_id: uuid.UUID
    server_id: uuid.UUID
    name: str


@dataclass(slots=True)
class McpReencryptReport:
    rewritten: int = 0
    unreadable: list[UnreadableMcpServer] = field(default_factory=list)


async def reencrypt_mcp_headers(
    sessionmaker: async_sessionmaker[AsyncSession], secretbox: SecretBox
) -> McpReencryptReport:
    """One short transaction per server (row locked, rewritten, audited); headers no
    configured key decrypts are left unchanged and reported."""
    report = McpReencryptReport()
    async with sessionmaker() as session:
        ids = await McpServerRepository(session).all_ids()
    for server_id in ids:
        async with sessionmaker() as session, session.begin():
            server = await McpServerRepository(session).locked(server_id)
            if server is None or server.headers_ciphertext is None:  # deleted meanwhile, or no headers
                continue
            try:
                server.headers_ciphertext = secretbox.rotate(server.headers_ciphertext)
            except SecretDecryptionError:
                report.unreadable.append(UnreadableMcpServer(server.org_id, server.id, server.name))
                continue
            await record(
                session,
                AuditAction.MCP_SERVER_UPDATED,
                context=RequestContext.system(),
                org_id=server.org_id,
                actor_type=ActorType.SYSTEM,
                resource_type="mcp_server",
                resource_id=server.id,
                details={"name": server.name, "changed": ["encryption_key"]},
            )
            report.rewritten += 1
    return report
