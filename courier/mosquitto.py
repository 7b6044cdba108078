"""Run a private Mosquitto from the repository's mosquitto.conf (for `make run`, tests, bench)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from courier.errors import ConfigError

_LISTENER = re.compile(r"^\s*listener\s+\d+.*$", re.MULTILINE)
_PID_FILE = re.compile(r"^\s*pid_file\s+.*$", re.MULTILINE)
_AUTH = re.compile(r"^\s*(allow_anonymous|password_file|acl_file)\s+.*$", re.MULTILINE)


def broker_address(url: str) -> tuple[str, int]:
    """(host, port) of an mqtt:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ConfigError(f"broker URL must start with mqtt://, not {url!r}")
    return parts.hostname or "127.0.0.1", parts.port or 1883


def is_listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise ConfigError("mosquitto is not installed (scripts/ensure-mosquitto.sh installs it)")
    return found


def default_config() -> Path:
    """The repository's mosquitto.conf (this package is installed editable from the repo)."""
    for folder in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = folder / "mosquitto.conf"
        if candidate.is_file():
            return candidate
    raise ConfigError("mosquitto.conf not found; run from the Courier repository")


class MosquittoProcess:
    """A Mosquitto started from a config template with its listener moved to `port`."""

    def __init__(
        self,
        template: Path | None,
        port: int,
        workdir: Path,
        host: str = "127.0.0.1",
        extra: str = "",
        anonymous: bool = False,
    ) -> None:
        """`anonymous`: let clients in without a user (tests of everything but security);
        otherwise only the users of `password_file`, as `acl_file` allows (Courier writes
        both: `courier serve --broker-password-file ... --broker-acl-file ...`)."""
        self.template = template or default_config()
        self.anonymous = anonymous
        self.password_file = workdir / "passwd"
        self.acl_file = workdir / "acl"
        self.host = host
        self.port = port
        self.workdir = workdir
        self.extra = extra
        self.config_file = workdir / f"mosquitto-{port}.conf"
        self.pid_file = workdir / f"mosquitto-{port}.pid"
        self.log_file = workdir / f"mosquitto-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = self.template.read_text("utf-8")
        text = _LISTENER.sub(f"listener {self.port} {self.host}", text, count=1)
        text = _PID_FILE.sub("", text)
        text = _AUTH.sub("", text)
        if self.anonymous:
            text += "\nallow_anonymous true\n"
        else:
            text += "\nallow_anonymous false\n"
            if "password_file" not in self.extra:
                for path in (self.password_file, self.acl_file):
                    if not path.exists():
                        path.touch(mode=0o600)
                text += f"password_file {self.password_file}\nacl_file {self.acl_file}\n"
        text += f"\npid_file {self.pid_file}\nlog_dest file {self.log_file}\n{self.extra}\n"
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root Mosquitto would switch to the `mosquitto` user, which cannot write the
            # pid, log and password files of this private broker.
            text += "user root\n"
        self.config_file.write_text(text, "utf-8")
        return self.config_file

    def start(self, daemon: bool = False, timeout: float = 10.0) -> None:
        self.write_config()
        command = [mosquitto_binary(), "-c", str(self.config_file)]
        if daemon:
            subprocess.run([*command, "-d"], check=True)  # noqa: S603
        else:
            self._process = subprocess.Popen(  # noqa: S603
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not is_listening(self.host, self.port):
            if self._process is not None and self._process.poll() is not None:
                raise ConfigError(f"mosquitto exited at start; see {self.log_file}")
            if time.monotonic() > deadline:
                raise ConfigError(f"mosquitto did not listen on {self.port}; see {self.log_file}")
            time.sleep(0.02)

    @property
    def pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(sig)
                self._process.wait(timeout=10)
            self._process = None
            return
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
