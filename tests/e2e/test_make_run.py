"""`make run` on a fresh copy of the repository sets everything up and serves."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from courier.errors import TransportError
from courier.mosquitto import MosquittoProcess, free_port
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport

ROOT = Path(__file__).resolve().parents[2]


def fresh_copy(target: Path) -> None:
    """The files a clone would have (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make"
)
@pytest.mark.timeout(300)
def test_make_run_serves_from_a_fresh_copy(tmp_path: Path) -> None:
    """Nothing listens on the broker port: `make run` starts a private Mosquitto that lets in
    only the users Courier writes (its own, then each registered device)."""
    fresh_copy(tmp_path)
    assert not (tmp_path / ".venv").exists()
    port, broker_port = free_port(), free_port()
    env = {
        **os.environ,
        "COURIER_BROKER": f"mqtt://127.0.0.1:{broker_port}",
        "COURIER_HTTP": f"127.0.0.1:{port}",
        "COURIER_CLIENT_ID": f"courier-make-{port}",
        "COURIER_PREFIX": f"make{port}",
    }
    env.pop("VIRTUAL_ENV", None)
    with open(tmp_path / "make-run.log", "wb") as log:
        process = subprocess.Popen(
            ["make", "run"], cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "make-run.log").read_text()[-3000:])
        assert (tmp_path / ".venv" / "bin" / "courier").exists()
        assert (tmp_path / "courier.db").exists()
        created = subprocess.run(
            [".venv/bin/courier", "apikey", "create", "--tenant", "acme", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(created.stdout)["key"]
        registered = httpx.post(
            f"http://127.0.0.1:{port}/v1/tenants/acme/devices",
            json={"id": "pump-7"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert registered.status_code == 201, registered.text
        password = registered.json()["credentials"]["password"]
        assert asyncio.run(_logs_in(broker_port, "pump-7", password))
        assert not asyncio.run(_logs_in(broker_port, "pump-7", "wrong"))
        assert not asyncio.run(_logs_in(broker_port, None, None))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        MosquittoProcess(None, broker_port, tmp_path / ".run").stop()


async def _logs_in(port: int, username: str | None, password: str | None) -> bool:
    transport = GmqttTransport(
        ConnectOptions(f"probe-{port}", port=port, username=username, password=password)
    )
    try:
        await transport.connect()
    except TransportError:
        return False
    await transport.disconnect()
    return True
