"""Typed, frozen settings, parsed once at the edge (flags, COURIER_* environment, TOML)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from courier.errors import ConfigError
from courier.mosquitto import broker_address
from courier.topics import validate_prefix


def _s(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of `courier serve`; each is a flag and a COURIER_<NAME> variable."""

    broker: str = _s("mqtt://127.0.0.1:1883", "MQTT broker, mqtt://user:pass@host:port")
    store: str = _s("sqlite:///courier.db", "store URL: sqlite:///path.db or memory://")
    http: str = _s("127.0.0.1:8080", "host:port of the REST API and metrics")
    prefix: str = _s("courier", "MQTT topic prefix P (P/devices/..., P/tenants/...)")
    client_id: str = _s("courier", "MQTT client id of this Courier (persistent session)")
    max_payload: int = _s(256 * 1024, "largest MQTT payload or REST body accepted, bytes")
    in_flight: int = _s(100, "commands on one device at once (burst policy)")
    queue_bound: int = _s(10_000, "pending executions per device before requests are refused")
    ack_timeout: float = _s(10.0, "default seconds to wait for a device ACK before resending")
    sweep_interval: float = _s(2.0, "seconds between safety sweeps of the store for due work")
    rate_limit: float = _s(100.0, "API calls per second per key (0 turns the limit off)")
    rate_burst: int = _s(200, "API calls a key may make at once above its rate")
    log_level: str = _s("info", "debug, info, warning or error")
    log_format: str = _s("auto", "json, text, or auto (json unless stderr is a terminal)")
    shutdown_grace: float = _s(10.0, "seconds to finish work after SIGTERM before cancelling")
    files_dir: str = _s("courier-files", "directory of the file store (uploads, packages)")
    max_file_size: int = _s(100 * 1024 * 1024, "largest file accepted by the file store, bytes")
    public_url: str = _s("", "base URL devices reach the API at (default http://<http>)")
    url_ttl: float = _s(3600.0, "seconds a signed file link in a command stays valid")
    lwm2m_mountpoint: str = _s("lwm2m", "topic mount point of the EMQX-format LwM2M profile")
    broker_password_file: str = _s("", "Mosquitto password file Courier writes (empty: unmanaged)")
    broker_acl_file: str = _s("", "Mosquitto ACL file Courier writes with the password file")
    broker_pid_file: str = _s("", "Mosquitto pid file: SIGHUP reloads the files after a change")

    def __post_init__(self) -> None:
        broker_address(self.broker)
        validate_prefix(self.prefix)
        self.http_address  # noqa: B018 - validates
        positive = (
            "max_payload",
            "in_flight",
            "queue_bound",
            "ack_timeout",
            "sweep_interval",
            "max_file_size",
            "url_ttl",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if self.rate_limit < 0 or self.rate_burst < 1:
            raise ConfigError("rate_limit must be >= 0 and rate_burst >= 1")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"log_level must be debug, info, warning or error: {self.log_level}")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must be an http(s) URL, not {self.public_url!r}")
        if not self.lwm2m_mountpoint or any(c in self.lwm2m_mountpoint for c in "+#\0"):
            raise ConfigError(f"lwm2m_mountpoint must be a topic level: {self.lwm2m_mountpoint!r}")
        if self.lwm2m_mountpoint == self.prefix.split("/")[0]:
            raise ConfigError("lwm2m_mountpoint must differ from the first level of prefix")
        if bool(self.broker_password_file) != bool(self.broker_acl_file):
            raise ConfigError("broker_password_file and broker_acl_file go together")
        if self.broker_password_file and "@" not in self.broker:
            raise ConfigError("a managed broker needs Courier's own user in --broker (user:pass@)")
        if self.log_format not in {"json", "text", "auto"}:
            raise ConfigError(f"log_format must be json, text or auto: {self.log_format}")

    @property
    def device_url(self) -> str:
        """Where devices fetch and put files: public_url, or the API's own address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = self.http_address
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - a comparison
        return f"http://{host}:{port}"

    @property
    def http_address(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"http must be host:port, not {self.http!r}")
        return host, int(port)

    @classmethod
    def help_of(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Settings:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in values.items():
            kind: Any = type(known[name].default)
            try:
                typed[name] = kind(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{name} must be a {kind.__name__}: {value!r}") from exc
        return cls(**typed)


def load_toml(path: Path) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys, or a [courier] table."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    table = data.get("courier", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [courier] must be a table")
    return {k.replace("-", "_"): v for k, v in table.items()}
