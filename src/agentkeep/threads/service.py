"""Thread rules: create (idempotent, on a live agent), read, change, delete, each within what
the caller may see. Another member's thread is as unknown as another organization's (404).
Never commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.repository import AgentRepository
from agentkeep.agents.service import AgentActor, AgentNotFound
from agentkeep.audit.actions import AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, InvalidInput, NotFound
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.threads.erasure import erase_thread_content
from agentkeep.threads.models import Thread, ThreadMessage
from agentkeep.threads.repository import ThreadRepository, Viewer
from agentkeep.threads.schemas import ThreadCreate, ThreadUpdate
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import EventType

IDEMPOTENCY_SCOPE = "threads.create"


class ThreadNotFound(NotFound):
    title = "Thread not found"


class AgentArchived(Conflict):
    type_slug = "agent-archived"
    title = "Agent archived"


class AgentVersionNotFound(InvalidInput):
    type_slug = "agent-version-not-found"
    title = "Agent version not found"


class ThreadService:
    def __init__(self, session: AsyncSession, audit: AuditService) -> None:
        self.session = session
        self.repository = ThreadRepository(session)
        self.agents = AgentRepository(session)
        self.idempotency = IdempotencyStore(session)
        self.audit = audit

    async def create(
        self, actor: AgentActor, viewer: Viewer, body: ThreadCreate, idempotency_key: str | None
    ) -> tuple[Thread, bool]:
        """The thread, and True when an earlier request with the same key and body made it."""
        thread_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(actor.org_id, actor.principal, IDEMPOTENCY_SCOPE)
            document = body.model_dump(mode="json")
            earlier = await self.idempotency.claim(scope, idempotency_key, fingerprint(document), thread_id)
            if earlier is not None:
                return await self._replayed(viewer, earlier), True
        await self._check_agent(actor.org_id, body.agent_id, body.agent_version)
        now = datetime.now(UTC)
        thread = Thread(
            id=thread_id,
            org_id=actor.org_id,
            agent_id=body.agent_id,
            agent_version=body.agent_version,
            title=body.title,
            metadata_=body.metadata,
            created_by_user_id=actor.user_id,
            created_by_api_key_id=actor.api_key_id,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
        )
        await self.repository.add(thread)
        await self._record(AuditAction.THREAD_CREATED, actor, thread)
        await webhook_outbox.record(
            self.session,
            org_id=actor.org_id,
            type=EventType.THREAD_CREATED,
            data={
                "thread_id": str(thread.id),
                "agent_id": str(thread.agent_id),
                "agent_version": thread.agent_version,
            },
        )
        return thread, False

    async def get(self, viewer: Viewer, thread_id: uuid.UUID) -> Thread:
        thread = await self.repository.get(viewer, thread_id)
        if thread is None:
            raise ThreadNotFound("No such thread.")
        return thread

    async def page(
        self,
        viewer: Viewer,
        limit: int,
        cursor: str | None,
        *,
        agent_id: uuid.UUID | None,
        created_by: uuid.UUID | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.repository.page(viewer, limit, cursor, agent_id=agent_id, created_by=created_by)

    async def messages(
        self, viewer: Viewer, thread_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[ThreadMessage], str | None]:
        thread = await self.get(viewer, thread_id)
        return await self.repository.messages(thread.id, limit, cursor)

    async def update(self, viewer: Viewer, thread_id: uuid.UUID, patch: ThreadUpdate) -> Thread:
        """Apply the fields sent; a change that changes nothing writes nothing."""
        thread = await self._locked(viewer, thread_id)
        changed = False
        if patch.title is not None and patch.title != thread.title:
            thread.title = patch.title
            changed = True
        if patch.metadata is not None and patch.metadata != thread.metadata_:
            thread.metadata_ = patch.metadata
            changed = True
        if changed:
            thread.updated_at = datetime.now(UTC)
            await self.session.flush()
        return thread

    async def delete(self, actor: AgentActor, viewer: Viewer, thread_id: uuid.UUID) -> None:
        """Delete the thread and erase its conversation (see threads.erasure)."""
        thread = await self._locked(viewer, thread_id)
        erased = await erase_thread_content(self.session, thread.id, datetime.now(UTC))
        await self._record(
            AuditAction.THREAD_DELETED,
            actor,
            thread,
            {
                "turns": erased.runs,
                "turns_cancelled": erased.runs_cancelled,
                "messages_erased": erased.messages,
            },
        )
        await self.repository.delete(thread)

    async def _locked(self, viewer: Viewer, thread_id: uuid.UUID) -> Thread:
        thread = await self.repository.lock(viewer, thread_id)
        if thread is None:
            raise ThreadNotFound("No such thread.")
        return thread

    async def _check_agent(self, org_id: uuid.UUID, agent_id: uuid.UUID, version: int | None) -> None:
        agent = await self.agents.get_any_in_org(org_id, agent_id)
        if agent is None:
            raise AgentNotFound("No such agent in this organization.", extra={"field": "agent_id"})
        if agent.archived_at is not None:
            raise AgentArchived(
                "The agent is archived; a conversation needs a live agent.", extra={"field": "agent_id"}
            )
        if version is not None and await self.agents.get_version(org_id, agent_id, version) is None:
            raise AgentVersionNotFound(
                f"The agent has no version {version}.", extra={"field": "agent_version"}
            )

    async def _replayed(self, viewer: Viewer, thread_id: uuid.UUID) -> Thread:
        # The key belongs to this caller (its principal), so the thread it made is theirs.
        thread = await self.repository.get_in_org(viewer.org_id, thread_id)
        if thread is None:
            raise Conflict(
                "The thread created with this Idempotency-Key has since been deleted; use a new key.",
                extra={"resource_id": str(thread_id)},
            )
        return thread

    async def _record(
        self, action: AuditAction, actor: AgentActor, thread: Thread, extra: dict[str, Any] | None = None
    ) -> None:
        details: dict[str, Any] = {
            "agent_id": str(thread.agent_id),
            "agent_version": thread.agent_version,
            "created_by_user_id": str(thread.created_by_user_id),
            **(extra or {}),
        }
        if actor.api_key_id is not None:
            details["key_id"] = str(actor.api_key_id)  # "api_key_id" would be redacted by name
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="thread",
            resource_id=thread.id,
            details=details,
        )
