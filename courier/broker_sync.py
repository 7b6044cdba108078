"""Keeps Mosquitto's password file and ACL in step with the registry: after every change of
devices, their passwords or the tenants' service users, both files are rewritten from the
store and Mosquitto reloads them; removed or rotated credentials are cut off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

from courier.broker_auth import (
    BrokerAuthFiles,
    BrokerUser,
    disconnect_client,
    render_acl,
)
from courier.credentials import mosquitto_hash
from courier.errors import TransportError
from courier.mosquitto import broker_address
from courier.store import Store
from courier.transport import ConnectOptions

log = logging.getLogger(__name__)


class BrokerSync:
    def __init__(
        self,
        store: Store,
        files: BrokerAuthFiles,
        prefix: str,
        broker_url: str,
        lwm2m_mountpoint: str | None = None,
    ) -> None:
        options = ConnectOptions.from_url(broker_url, client_id="courier")
        if not options.username or not options.password:
            raise ValueError("a managed broker needs Courier's user: mqtt://user:pass@host:port")
        self.store = store
        self.files = files
        self.prefix = prefix
        self.lwm2m_mountpoint = lwm2m_mountpoint
        self.host, self.port = broker_address(broker_url)
        self.username, self.password = options.username, options.password
        self._own = BrokerUser(self.username, mosquitto_hash(self.password))
        self._lock = asyncio.Lock()

    @classmethod
    def from_paths(
        cls,
        store: Store,
        prefix: str,
        broker_url: str,
        password_file: str,
        acl_file: str,
        pid_file: str,
        lwm2m_mountpoint: str | None = None,
    ) -> BrokerSync:
        files = BrokerAuthFiles(
            Path(password_file), Path(acl_file), Path(pid_file) if pid_file else None
        )
        return cls(store, files, prefix, broker_url, lwm2m_mountpoint)

    async def sync(self, cut_off: Collection[str] = ()) -> None:
        """Rewrite both files from the store and reload; then end the sessions of `cut_off`
        (client ids: a deleted device, or one whose password changed)."""
        async with self._lock:
            devices, service_users = await self.store.broker_credentials()
            users = _unique(
                [
                    self._own,
                    *(BrokerUser(device_id, digest) for device_id, digest in devices),
                    *(BrokerUser(u.name, u.password_hash) for u in service_users),
                ]
            )
            acl = render_acl(
                self.prefix,
                self.username,
                {u.name: u.tenant for u in service_users},
                self.lwm2m_mountpoint,
            )
            reloaded = await asyncio.to_thread(self.files.write, users, acl)
            log.info(
                "broker credentials written",
                extra={"users": len(users), "reloaded": reloaded, "cut_off": len(cut_off)},
            )
            if reloaded:
                await asyncio.sleep(0.05)  # Mosquitto applies a SIGHUP from its main loop
            for client_id in cut_off:
                try:
                    await disconnect_client(
                        self.host, self.port, self.username, self.password, client_id
                    )
                except TransportError as exc:
                    log.warning("could not cut off %s: %s", client_id, exc)


def _unique(users: list[BrokerUser]) -> list[BrokerUser]:
    """Each username once, the first kept (Courier's, then devices', then service users'):
    registration refuses a taken name, and a store that holds one twice anyway (written
    before that check) must not stop every later change from reaching the broker."""
    seen: dict[str, BrokerUser] = {}
    for user in users:
        if user.username in seen:
            log.error(
                "MQTT username listed twice; the second is left out", extra={"user": user.username}
            )
            continue
        seen[user.username] = user
    return list(seen.values())
