"""Agent rules: create (idempotent), change (versioned, optimistic concurrency), archive,
read. Every change writes the whole configuration as a new immutable version and one audit
record. Never commits."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.agents.models import Agent, AgentVersion
from agentkeep.agents.repository import AgentRepository
from agentkeep.agents.schemas import AgentCreate, AgentUpdate
from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, NotFound, PreconditionFailed
from agentkeep.idempotency.service import IdempotencyScope, IdempotencyStore, fingerprint
from agentkeep.tools.registry import McpToolName, ToolConfig
from agentkeep.webhooks import outbox as webhook_outbox
from agentkeep.webhooks.events import EventType

if TYPE_CHECKING:
    from agentkeep.mcp.agent_check import McpToolCheck

# The keys of an `agent_versions.config` document (runs.contract.AgentSpec.from_config reads it).
CONFIG_FIELDS = (
    "name",
    "description",
    "model",
    "system_prompt",
    "tools",
    "limits",
    "status",
    "approvers",
    "approval_timeout_seconds",
)
IDEMPOTENCY_SCOPE = "agents.create"


class AgentNotFound(NotFound):
    title = "Agent not found"


class AgentNameTaken(Conflict):
    type_slug = "agent-name-taken"
    title = "Agent name taken"


class AgentChangedConcurrently(Conflict):
    type_slug = "agent-changed-concurrently"
    title = "Agent changed concurrently"


class AgentVersionMismatch(PreconditionFailed):
    type_slug = "agent-version-mismatch"
    title = "Agent version mismatch"


@dataclass(frozen=True, slots=True)
class AgentActor:
    user_id: uuid.UUID
    org_id: uuid.UUID
    api_key_id: uuid.UUID | None = None

    @property
    def principal(self) -> str:
        """Whose idempotency keys these are: keys of different callers never meet."""
        return f"api_key:{self.api_key_id}" if self.api_key_id is not None else f"user:{self.user_id}"

    @property
    def actor_type(self) -> ActorType:
        return ActorType.API_KEY if self.api_key_id is not None else ActorType.USER


@dataclass(frozen=True, slots=True)
class CreatedAgent:
    agent: Agent
    # True: an earlier request with the same Idempotency-Key and body created it.
    replayed: bool


def entity_tag(version: int) -> str:
    """The ETag of an agent at `version`."""
    return f'"{version}"'


def precondition_holds(if_match: str, version: int) -> bool:
    """RFC 9110 If-Match: `*`, or any listed strong tag equal to the current one."""
    current = entity_tag(version)
    return any(tag.strip() in ("*", current) for tag in if_match.split(","))


def config_of(agent: Agent) -> dict[str, Any]:
    """The agent's configuration as an `agent_versions.config` document (a deep copy)."""
    return {field: copy.deepcopy(getattr(agent, field)) for field in CONFIG_FIELDS}


async def agents_page(
    session: AsyncSession,
    actor: AgentActor,
    limit: int,
    cursor: str | None,
    *,
    status: str | None,
    name: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the organization's live agents as `AgentRead` rows. A read that needs
    nothing else of the service (audit, idempotency, MCP check): the list route calls it
    with the request's session alone."""
    return await AgentRepository(session).page_in_org(actor.org_id, limit, cursor, status=status, name=name)


class AgentService:
    def __init__(
        self, session: AsyncSession, audit: AuditService, mcp_tools: McpToolCheck | None = None
    ) -> None:
        self.session = session
        self.repository = AgentRepository(session)
        self.idempotency = IdempotencyStore(session)
        self.audit = audit
        self.mcp_tools = mcp_tools

    async def _check_mcp_tools(self, actor: AgentActor, tools: list[ToolConfig]) -> None:
        """Every MCP tool named must exist on an enabled server of the organization. Checked
        before anything is written (discovery may write the server's cached list)."""
        named = [tool.mcp for tool in tools if tool.mcp is not None]
        if not named:
            return
        if self.mcp_tools is None:  # pragma: no cover - the router always gives one
            raise RuntimeError("AgentService needs an McpToolCheck to accept MCP tools")
        await self.mcp_tools.check(actor.user_id, actor.org_id, _unique(named))

    async def create(self, actor: AgentActor, body: AgentCreate, idempotency_key: str | None) -> CreatedAgent:
        config = _create_document(body)
        await self._check_mcp_tools(actor, body.tools)
        agent_id = uuid.uuid4()
        if idempotency_key is not None:
            scope = IdempotencyScope(actor.org_id, actor.principal, IDEMPOTENCY_SCOPE)
            earlier = await self.idempotency.claim(scope, idempotency_key, fingerprint(config), agent_id)
            if earlier is not None:
                return CreatedAgent(await self._replayed(actor, earlier), replayed=True)
        if await self.repository.name_taken(actor.org_id, config["name"]):
            raise _name_taken(config["name"])
        now = datetime.now(UTC)
        agent = Agent(
            id=agent_id,
            org_id=actor.org_id,
            created_by=actor.user_id,
            version=1,
            created_at=now,
            updated_at=now,
            **config,
        )
        version = AgentVersion(
            agent_id=agent_id,
            org_id=actor.org_id,
            version=1,
            config=copy.deepcopy(config),
            created_by=actor.user_id,
            created_at=now,
        )
        try:
            async with self.session.begin_nested():
                await self.repository.add(agent)
                await self.repository.add(version)
        except IntegrityError:
            # A concurrent create took the name between the check and the insert.
            raise _name_taken(config["name"]) from None
        await self._record(
            AuditAction.AGENT_CREATED,
            actor,
            agent,
            {"model": agent.model, "tools": [tool["name"] for tool in agent.tools]},
        )
        return CreatedAgent(agent, replayed=False)

    async def get(self, actor: AgentActor, agent_id: uuid.UUID) -> Agent:
        agent = await self.repository.get_in_org(actor.org_id, agent_id)
        if agent is None:
            raise AgentNotFound("No such agent.")
        return agent

    async def page(
        self, actor: AgentActor, limit: int, cursor: str | None, *, status: str | None, name: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await agents_page(self.session, actor, limit, cursor, status=status, name=name)

    async def versions(
        self, actor: AgentActor, agent_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[AgentVersion], str | None]:
        agent = await self.get(actor, agent_id)
        return await self.repository.versions_page(actor.org_id, agent.id, limit, cursor)

    async def update(
        self, actor: AgentActor, agent_id: uuid.UUID, patch: AgentUpdate, if_match: str | None
    ) -> Agent:
        """Apply a partial change as a new version. A change that changes nothing writes
        nothing. `if_match` (the If-Match header) must name the current version."""
        if patch.tools is not None:
            await self._check_mcp_tools(actor, patch.tools)
        agent = await self._locked(actor, agent_id, if_match)
        current = config_of(agent)
        proposed = _patched(current, patch)
        changed = [field for field in CONFIG_FIELDS if proposed[field] != current[field]]
        if not changed:
            return agent
        if "name" in changed and await self.repository.name_taken(
            actor.org_id, proposed["name"], other_than=agent.id
        ):
            raise _name_taken(proposed["name"])
        next_version = agent.version + 1
        try:
            async with self.session.begin_nested():
                for field in changed:
                    setattr(agent, field, proposed[field])
                agent.version = next_version
                agent.updated_at = datetime.now(UTC)
                await self.repository.add(
                    AgentVersion(
                        agent_id=agent.id,
                        org_id=actor.org_id,
                        version=next_version,
                        config=copy.deepcopy(proposed),
                        created_by=actor.user_id,
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            if "name" in changed and await self.repository.name_taken(
                actor.org_id, proposed["name"], other_than=agent_id
            ):
                raise _name_taken(proposed["name"]) from None
            raise AgentChangedConcurrently(
                "The agent was changed by another request at the same time; read it again and retry."
            ) from None
        await self._record(AuditAction.AGENT_UPDATED, actor, agent, {"changed": changed})
        await webhook_outbox.record(
            self.session,
            org_id=agent.org_id,
            type=EventType.AGENT_UPDATED,
            data={"agent_id": str(agent.id), "version": agent.version, "changed": changed},
        )
        return agent

    async def archive(self, actor: AgentActor, agent_id: uuid.UUID, if_match: str | None) -> None:
        """Archive the agent: it disappears from the API and its name is free again; its
        versions, runs and audit records stay."""
        agent = await self._locked(actor, agent_id, if_match)
        agent.archived_at = datetime.now(UTC)
        await self._record(AuditAction.AGENT_DELETED, actor, agent, {})

    async def _locked(self, actor: AgentActor, agent_id: uuid.UUID, if_match: str | None) -> Agent:
        agent = await self.repository.lock_in_org(actor.org_id, agent_id)
        if agent is None:
            raise AgentNotFound("No such agent.")
        if if_match is not None and not precondition_holds(if_match, agent.version):
            raise AgentVersionMismatch(
                f"If-Match does not name the current version ({entity_tag(agent.version)}); "
                "read the agent again and retry.",
                headers={"ETag": entity_tag(agent.version)},
                extra={"current_version": agent.version},
            )
        return agent

    async def _replayed(self, actor: AgentActor, agent_id: uuid.UUID) -> Agent:
        agent = await self.repository.get_any_in_org(actor.org_id, agent_id)
        if agent is None or agent.archived_at is not None:
            raise Conflict(
                "The agent created with this Idempotency-Key has since been deleted; use a new key.",
                extra={"resource_id": str(agent_id)},
            )
        return agent

    async def _record(
        self, action: AuditAction, actor: AgentActor, agent: Agent, details: dict[str, Any]
    ) -> None:
        details = {"name": agent.name, "version": agent.version, **details}
        if actor.api_key_id is not None:
            details["key_id"] = str(actor.api_key_id)  # "api_key_id" would be redacted by name
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=actor.org_id,
            actor_type=actor.actor_type,
            resource_type="agent",
            resource_id=agent.id,
            details=details,
        )


def _unique(names: list[McpToolName]) -> list[McpToolName]:
    return list(dict.fromkeys(names))


def _name_taken(name: str) -> AgentNameTaken:
    return AgentNameTaken(
        "An agent with this name exists in the organization.", extra={"field": "name", "name": name}
    )


def _create_document(body: AgentCreate) -> dict[str, Any]:
    return {
        "name": body.name,
        "description": body.description,
        "model": body.model,
        "system_prompt": body.system_prompt,
        "tools": [tool.model_dump(mode="json") for tool in body.tools],
        "limits": body.limits.model_dump(mode="json"),
        "status": body.status,
        "approvers": [role.value for role in body.approvers],
        "approval_timeout_seconds": body.approval_timeout_seconds,
    }


def _patched(current: dict[str, Any], patch: AgentUpdate) -> dict[str, Any]:
    proposed = copy.deepcopy(current)
    for field in patch.model_fields_set:
        if field == "tools":
            assert patch.tools is not None
            proposed["tools"] = [tool.model_dump(mode="json") for tool in patch.tools]
        elif field == "limits":
            assert patch.limits is not None
            proposed["limits"] = {**current["limits"], **patch.limits.model_dump(exclude_unset=True)}
        elif field == "approvers":
            assert patch.approvers is not None
            proposed["approvers"] = [role.value for role in patch.approvers]
        else:
            proposed[field] = getattr(patch, field)
    return proposed
