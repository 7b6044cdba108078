"""What every benchmark needs: a private broker, simulated devices in their own process,
presence tracking, and small statistics helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import orjson

from courier.mosquitto import MosquittoProcess, free_port
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def medians(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each figure's median over runs whose samples name the same figures."""
    return {k: median(s[k] for s in samples) for k in samples[0]}


def rate_and_latency(count: int, elapsed: float, latencies: list[float]) -> dict[str, float]:
    """Commands a second over `elapsed`, and the p50 and p99 of `latencies` (seconds) in ms."""
    return {
        "per_s": count / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_broker(workdir: Path) -> MosquittoProcess:
    broker = MosquittoProcess(None, free_port(), workdir / "broker", anonymous=True)
    broker.start()
    return broker


class Simulator:
    """`courier simulate` in its own process: the devices every measurement talks to."""

    def __init__(self, broker: MosquittoProcess, prefix: str, base: str, count: int) -> None:
        self.broker = broker
        self.prefix = prefix
        self.base = base
        self.count = count
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def device_ids(self) -> list[str]:
        return [f"{self.base}-{i}" for i in range(self.count)] if self.count > 1 else [self.base]

    def start(self) -> None:
        env = {**os.environ, "COURIER_BROKER": self.broker.url, "COURIER_PREFIX": self.prefix}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "courier",
                "simulate",
                "--device",
                self.base,
                "--devices",
                str(self.count),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class PresenceWatch:
    """Knows which devices say they are online (retained presence)."""

    def __init__(self, broker: MosquittoProcess, prefix: str, client_id: str) -> None:
        self.topics = Topics(prefix)
        self.online: set[str] = set()
        self.transport = GmqttTransport(
            ConnectOptions(client_id=client_id, port=broker.port, clean_start=True)
        )

    async def start(self) -> None:
        async def seen(message: Message) -> None:
            parsed = self.topics.parse(message.topic)
            if parsed is not None and parsed.device is not None and message.payload:
                if orjson.loads(message.payload).get("online"):
                    self.online.add(parsed.device)
                else:
                    self.online.discard(parsed.device)

        self.transport.on_message = seen
        await self.transport.connect()
        await self.transport.subscribe([self.topics.all_presence])

    async def wait_for(self, devices: Iterable[str], timeout: float = 300.0) -> None:
        wanted = set(devices)
        deadline = asyncio.get_running_loop().time() + timeout
        while not wanted <= self.online:
            if asyncio.get_running_loop().time() > deadline:
                missing = len(wanted - self.online)
                raise TimeoutError(f"{missing} simulated devices did not come online")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.transport.disconnect()


class EventWatch:
    """Follows P/tenants/{tenant}/events: when each execution reached a terminal state."""

    TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED"})

    def __init__(self, broker: MosquittoProcess, prefix: str, tenant: str) -> None:
        self.topic = Topics(prefix).events(tenant)
        self.ended: dict[str, float] = {}
        self.states: dict[str, str] = {}
        self.on_end: Callable[[str], None] | None = None  # each execution, when it first ends
        self._waiters: list[tuple[int, asyncio.Event]] = []
        self.transport = GmqttTransport(
            ConnectOptions(
                client_id=f"events-{prefix}-{tenant}", port=broker.port, clean_start=True
            )
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        async def seen(message: Message) -> None:
            event = orjson.loads(message.payload)
            if event["state"] in self.TERMINAL:
                execution = event["execution"]
                if execution not in self.ended:
                    self.ended[execution] = loop.time()
                    if self.on_end is not None:
                        self.on_end(execution)
                self.states[execution] = event["state"]
                for target, waiter in self._waiters:
                    if len(self.ended) >= target:
                        waiter.set()

        self.transport.on_message = seen
        await self.transport.connect()
        await self.transport.subscribe([self.topic], qos=0)

    async def wait_count(self, target: int, timeout: float = 600.0) -> None:
        waiter = asyncio.Event()
        self._waiters.append((target, waiter))
        if len(self.ended) < target:
            await asyncio.wait_for(waiter.wait(), timeout)

    def reset(self) -> None:
        self.ended.clear()
        self.states.clear()
        self._waiters.clear()
        self.on_end = None

    async def stop(self) -> None:
        await self.transport.disconnect()


class CourierServe:
    """`courier serve` as its own process (for the REST figures and peak RSS)."""

    def __init__(self, broker: MosquittoProcess, prefix: str, store: Path, workdir: Path) -> None:
        self.port = free_port()
        self.store = f"sqlite:///{store}"
        self.log = workdir / f"serve-{self.port}.log"
        self.env = {
            **os.environ,
            "COURIER_BROKER": broker.url,
            "COURIER_STORE": self.store,
            "COURIER_HTTP": f"127.0.0.1:{self.port}",
            "COURIER_PREFIX": prefix,
            "COURIER_CLIENT_ID": f"courier-{prefix}-{self.port}",
            "COURIER_RATE_LIMIT": "0",
            "COURIER_LOG_LEVEL": "warning",
            "COURIER_QUEUE_BOUND": "1000000",
            "COURIER_IN_FLIGHT": "1000",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def api_key(self, tenant: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "courier",
                "apikey",
                "create",
                "--tenant",
                tenant,
                "--json",
                "--store",
                self.store,
            ],
            env=self.env,
            capture_output=True,
            check=True,
        )
        key: str = orjson.loads(out.stdout)["key"]
        return key

    async def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "courier", "serve"], env=self.env, stdout=log, stderr=log
            )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"courier serve exited: {self.log.read_text()[-2000:]}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            ready = b" 200 " in await reader.readline()
            writer.close()
            if ready:
                return
            await asyncio.sleep(0.05)

    @property
    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
