"""Start a private Mosquitto for `make run` unless something already listens on the broker port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from courier.mosquitto import MosquittoProcess, broker_address, is_listening

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    host, port = broker_address(os.environ.get("COURIER_BROKER", "mqtt://127.0.0.1:1883"))
    if is_listening(host, port):
        print(f"broker: using the one listening on {host}:{port}")
        return 0
    run_dir = ROOT / ".run"
    broker = MosquittoProcess(ROOT / "mosquitto.conf", port=port, workdir=run_dir, host=host)
    broker.start(daemon=True)
    print(f"broker: started a private Mosquitto on {host}:{port} (pid file {broker.pid_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
