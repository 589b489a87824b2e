"""Provider rules: create, list, rotate, delete. No HTTP objects, never a commit.

The API key is encrypted with the newest SECRETS_ENCRYPTION_KEYS key before it reaches the
session, and nothing this service returns carries it. Plain http is accepted only for
loopback hosts in development (a model server on the same machine); everything else must
be https, so a key never crosses a network in clear text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address

import httpx
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentkeep.audit.actions import ActorType, AuditAction
from agentkeep.audit.service import AuditService
from agentkeep.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from agentkeep.orgs.service import OrgNotFound
from agentkeep.providers.models import Provider
from agentkeep.providers.repository import ProviderRepository
from agentkeep.providers.schemas import KeyStatus
from agentkeep.security.secretbox import SecretBox, SecretDecryptionError
from agentkeep.tools.netguard import normalise_host

KEY_HINT_LENGTH = 4
# Keys shorter than this show no hint: four characters of a short key reveal too much of it.
KEY_HINT_MIN_KEY_LENGTH = 16


class ProviderNotFound(NotFound):
    title = "Provider not found"


class EncryptionNotConfigured(ServiceUnavailable):
    type_slug = "encryption-not-configured"
    title = "Secrets encryption is not configured"

    def __init__(self) -> None:
        super().__init__(
            "Provider API keys are stored encrypted, and this server has no encryption key: "
            "set SECRETS_ENCRYPTION_KEYS (generate a key with `agentkeep gen-secret "
            "--encryption-key`) and restart."
        )


class ProviderKeyUnreadable(ServiceUnavailable):
    type_slug = "provider-key-unreadable"
    title = "Provider API key unreadable"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The stored API key of provider {name!r} cannot be decrypted with any key in "
            "SECRETS_ENCRYPTION_KEYS (was the key that encrypted it removed?). Put that key "
            "back in the list, or set a new API key for the provider.",
            extra={"provider": name},
        )


@dataclass(frozen=True, slots=True)
class ProviderActor:
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    via_api_key: bool


def key_hint(api_key: str) -> str:
    return api_key[-KEY_HINT_LENGTH:] if len(api_key) >= KEY_HINT_MIN_KEY_LENGTH else ""


def is_loopback_host(host: str) -> bool:
    host = normalise_host(host)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(base_url: str, environment: str) -> None:
    """https everywhere; http only to this machine, and only in development."""
    url = httpx.URL(base_url)
    if url.scheme == "https":
        return
    if environment == "development" and is_loopback_host(url.host):
        return
    raise InvalidInput(
        "base_url must use https (plain http is accepted only for a loopback host in development).",
        extra={"field": "base_url"},
    )


def key_status(secretbox: SecretBox | None, provider: Provider) -> KeyStatus:
    if secretbox is None:
        return KeyStatus.NO_ENCRYPTION_KEY
    try:
        secretbox.decrypt(provider.api_key_ciphertext)
    except SecretDecryptionError:
        return KeyStatus.UNREADABLE
    return KeyStatus.OK


def decrypt_key(secretbox: SecretBox | None, provider: Provider) -> SecretStr:
    """The provider's API key; a 503 problem naming the cause when it cannot be read."""
    if secretbox is None:
        raise EncryptionNotConfigured()
    try:
        return SecretStr(secretbox.decrypt(provider.api_key_ciphertext))
    except SecretDecryptionError:
        raise ProviderKeyUnreadable(provider.name) from None


class ProviderService:
    def __init__(
        self, session: AsyncSession, audit: AuditService, secretbox: SecretBox | None, environment: str
    ) -> None:
        self.repository = ProviderRepository(session)
        self.audit = audit
        self.secretbox = secretbox
        self.environment = environment

    def status_of(self, provider: Provider) -> KeyStatus:
        return key_status(self.secretbox, provider)

    async def create(
        self, actor: ProviderActor, org_id: uuid.UUID, name: str, kind: str, base_url: str, api_key: SecretStr
    ) -> Provider:
        org_id = self._current(actor, org_id)
        check_transport(base_url, self.environment)
        box = self._box()
        if await self.repository.name_taken(org_id, name):
            raise self._name_conflict()
        secret = api_key.get_secret_value()
        provider = Provider(
            id=uuid.uuid4(),
            org_id=org_id,
            created_by=actor.user_id,
            name=name,
            kind=kind,
            base_url=base_url,
            api_key_ciphertext=box.encrypt(secret),
            key_hint=key_hint(secret),
        )
        try:
            await self.repository.add(provider)
        except IntegrityError:
            raise self._name_conflict() from None
        await self._record(
            AuditAction.PROVIDER_CREATED,
            actor,
            provider,
            {"name": name, "kind": kind, "base_url": base_url},
        )
        return provider

    async def page(
        self, actor: ProviderActor, org_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[Provider], str | None]:
        return await self.repository.page_in_org(self._current(actor, org_id), limit, cursor)

    async def get(self, actor: ProviderActor, org_id: uuid.UUID, provider_id: uuid.UUID) -> Provider:
        provider = await self.repository.get_in_org(self._current(actor, org_id), provider_id)
        if provider is None:
            raise ProviderNotFound("No such provider.")
        return provider

    async def update(
        self,
        actor: ProviderActor,
        org_id: uuid.UUID,
        provider_id: uuid.UUID,
        base_url: str | None,
        api_key: SecretStr | None,
    ) -> Provider:
        provider = await self.get(actor, org_id, provider_id)
        changed: list[str] = []
        if base_url is not None:
            check_transport(base_url, self.environment)
        if api_key is not None:
            secret = api_key.get_secret_value()
            provider.api_key_ciphertext = self._box().encrypt(secret)
            provider.key_hint = key_hint(secret)
            changed.append("api_key")
        if base_url is not None and base_url != provider.base_url:
            provider.base_url = base_url
            changed.append("base_url")
        provider.updated_at = datetime.now(UTC)
        await self._record(
            AuditAction.PROVIDER_UPDATED,
            actor,
            provider,
            {"name": provider.name, "changed": changed, "base_url": provider.base_url},
        )
        return provider

    async def delete(self, actor: ProviderActor, org_id: uuid.UUID, provider_id: uuid.UUID) -> None:
        provider = await self.get(actor, org_id, provider_id)
        await self.repository.delete(provider)
        await self._record(AuditAction.PROVIDER_DELETED, actor, provider, {"name": provider.name})

    @staticmethod
    def _current(actor: ProviderActor, org_id: uuid.UUID) -> uuid.UUID:
        """Only the caller's current organization exists here: any other id answers 404."""
        if actor.org_id is None or org_id != actor.org_id:
            raise OrgNotFound("No such organization.")
        return org_id

    def _box(self) -> SecretBox:
        if self.secretbox is None:
            raise EncryptionNotConfigured()
        return self.secretbox

    @staticmethod
    def _name_conflict() -> Conflict:
        return Conflict("A provider with this name exists in this organization.", extra={"field": "name"})

    async def _record(
        self, action: AuditAction, actor: ProviderActor, provider: Provider, details: dict[str, object]
    ) -> None:
        await self.audit.record(
            action,
            user_id=actor.user_id,
            org_id=provider.org_id,
            actor_type=ActorType.API_KEY if actor.via_api_key else ActorType.USER,
            resource_type="provider",
            resource_id=provider.id,
            details=details,
        )
