"""Start a private Mosquitto for `make run` unless something already listens on the broker port.

The private broker lets in only known users. Courier's own user gets a password (kept in
.run/courier-password) and `.run/courier.env` tells `courier serve` where the broker's
password file, ACL and pid file are, so it keeps them in step with its registry.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

from courier.mosquitto import MosquittoProcess, broker_address, is_listening

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
ENV_FILE = RUN / "courier.env"


def _courier_password() -> str:
    path = RUN / "courier-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    path.write_text(password)
    path.chmod(0o600)
    return password


def _running(pid: int | None) -> bool:
    """Our private broker from an earlier `make run` (its pid file names a live process)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main() -> int:
    RUN.mkdir(exist_ok=True)
    url = os.environ.get("COURIER_BROKER", "mqtt://127.0.0.1:1883")
    host, port = broker_address(url)
    broker = MosquittoProcess(ROOT / "mosquitto.conf", port=port, workdir=RUN, host=host)
    if is_listening(host, port):
        if not (ENV_FILE.exists() and _running(broker.pid)):
            ENV_FILE.write_text("")  # someone else's broker: Courier does not manage its users
        print(f"broker: using the one listening on {host}:{port}")
        return 0
    broker.start(daemon=True)
    password = quote(_courier_password(), safe="")
    ENV_FILE.write_text(
        f"COURIER_BROKER=mqtt://courier:{password}@{host}:{port}\n"
        f"COURIER_BROKER_PASSWORD_FILE={broker.password_file}\n"
        f"COURIER_BROKER_ACL_FILE={broker.acl_file}\n"
        f"COURIER_BROKER_PID_FILE={broker.pid_file}\n"
    )
    print(f"broker: started a private Mosquitto on {host}:{port} (pid file {broker.pid_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
