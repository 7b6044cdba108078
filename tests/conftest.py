"""Fixtures: a real Mosquitto per session (and per test when a test kills it), stores of
every backend, unique topic prefixes, a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from courier.clock import FakeClock
from courier.mosquitto import MosquittoProcess, free_port
from courier.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(
        ROOT / "mosquitto.conf", free_port(), tmp_path_factory.mktemp("mosquitto"), anonymous=True
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(shared_broker: MosquittoProcess) -> MosquittoProcess:
    """The session's Mosquitto; tests keep apart by using their own topic prefix."""
    return shared_broker


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A Mosquitto for this test alone (it may kill and restart it)."""
    broker = MosquittoProcess(
        ROOT / "mosquitto.conf", free_port(), tmp_path / "mosquitto", anonymous=True
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each contract test runs against every backend."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/courier.db"
    opened = open_store(url, rand=lambda: 0.5)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/courier.db", rand=lambda: 0.5)
    await opened.open()
    yield opened
    await opened.close()
