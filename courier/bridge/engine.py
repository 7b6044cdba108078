"""The bridge: publishes due executions, consumes replies and presence, fires timers.

The store is the truth. In-memory sets of "routes that may have work" are only a fast path:
every `sweep_interval` the dispatcher scans the store for due work of online devices, and the
timer loop always asks the store for the next deadline, so a restart resumes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from courier.bridge.events import event_bytes
from courier.bridge.inbound import InboundHandler
from courier.bridge.ingress import Ingress
from courier.bridge.lwm2m import Lwm2mProfile
from courier.clock import Clock
from courier.core.records import Change, Dispatch
from courier.errors import TransportError
from courier.files.service import Files, with_links
from courier.metrics import Metrics
from courier.schemas.mqtt import cancel_bytes, envelope_bytes
from courier.schemas.states import IN_FLIGHT, TERMINAL, ExecutionState
from courier.store import Store
from courier.topics import Topics
from courier.transport import Transport

log = logging.getLogger(__name__)
S = ExecutionState


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's view, and collect young objects
    less often: the command path makes many short-lived tuples, and full collections over
    a big heap held the loop for ~50 ms (measured: 67 -> 11 µs of collection per command).
    For a process that runs Courier (`courier serve`, the benchmarks), once it is set up:
    it changes the interpreter's collector for the whole process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    prefix: str = "courier"
    max_payload: int = 256 * 1024
    in_flight: int = 100
    sweep_interval: float = 2.0
    claim_batch: int = 1000
    routes_per_claim: int = 64
    timer_batch: int = 500
    publish_events: bool = True
    lwm2m_mountpoint: str = "lwm2m"


# Commits with more changes than this are published after their writers are answered.
PUBLISH_LATER_OVER = 200
# Changes published per loop iteration: a fan-out's thousands of commands and events go out
# in slices, and what else waits on the loop (its own 201, replies) runs between them.
PUBLISH_SLICE = 200


class Bridge:
    """Moves executions between the store and the broker."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        config: BridgeConfig,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.transport = transport
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.topics = Topics(config.prefix)
        self.inbound = InboundHandler(self)
        self.ingress: Ingress | None = None  # requests over MQTT, when a service is wired in
        self.files: Files | None = None  # signs the file links of commands, when wired in
        self.lwm2m = Lwm2mProfile(self, config.lwm2m_mountpoint)
        self._dirty: dict[str, None] = {}
        # Routes that may have QUEUED executions: a finished command frees a slot, which
        # only matters to a device with something waiting. The sweep covers what this misses.
        self._backlog: set[str] = set()
        self._outbox: deque[Change] = deque()  # committed changes to publish, in order
        self._outbox_due = False  # a later loop iteration publishes the outbox
        self._dirty_all = True
        self._wake_dispatch = asyncio.Event()
        self._wake_timers = asyncio.Event()
        self._next_timer: float | None = None
        self._stopping = False
        self._started = asyncio.Event()
        transport.on_message = self.inbound.handle
        transport.on_message_nowait = self.inbound.handle_nowait
        transport.on_connect = self._on_connect
        transport.on_disconnect = self._on_disconnect

    # --- life cycle --------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started.is_set() and self.transport.connected

    async def start(self) -> None:
        """Connect (retrying until the broker answers), subscribe, listen to the store."""
        self.store.add_listener(self.on_changes)
        delay = 0.2
        while True:
            try:
                await self.transport.connect()
                break
            except TransportError as exc:
                log.warning("broker unavailable, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        topics = [
            self.topics.all_replies,
            self.topics.all_notifications,
            self.topics.all_presence,
            self.topics.all_attached_presence,
        ]
        if self.ingress is not None:
            topics.append(self.topics.all_requests)
        topics.extend(self.lwm2m.topics)
        if self.files is not None:
            await self.files.links(self.clock)
        await self.lwm2m.load()
        await self.transport.subscribe(topics, qos=1)
        self.metrics.connected.set(1)
        self._backlog.update(await self.store.queued_routes())
        self._started.set()
        self.wake_all()

    async def run(self, stop: asyncio.Event) -> None:
        """Run the loops until `stop` is set; a loop that dies stops the bridge loudly."""
        await self.start()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._dispatch_loop(), name="bridge-dispatch")
            group.create_task(self._timer_loop(), name="bridge-timers")
            group.create_task(self._sweep_loop(), name="bridge-sweep")
            await stop.wait()
            self._stopping = True
            self._wake_dispatch.set()
            self._wake_timers.set()
        await self.close()

    async def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.store.remove_listener(self.on_changes)
        await self.transport.disconnect()
        self.metrics.connected.set(0)

    def _on_connect(self, session_present: bool) -> None:
        log.info("connected to the broker", extra={"session_present": session_present})
        self.metrics.connected.set(1)
        self.wake_all()

    def _on_disconnect(self) -> None:
        log.warning("lost the broker connection; reconnecting")
        self.metrics.connected.set(0)

    async def refresh_presence(self, device_ids: Sequence[str], hold: float = 2.0) -> None:
        """Learn the retained presence of just-registered devices: a device that connected
        before it was registered announced itself when Courier did not know it. A
        subscription to its own topic makes the broker send that presence again."""
        if not self.transport.connected:
            return
        topics = [self.topics.presence(d) for d in device_ids]
        await self.transport.subscribe(topics, qos=1)
        asyncio.get_running_loop().call_later(
            hold, lambda: asyncio.ensure_future(self._unsubscribe(topics))
        )

    async def _unsubscribe(self, topics: list[str]) -> None:
        with contextlib.suppress(TransportError):
            await self.transport.unsubscribe(topics)

    # --- nudges ------------------------------------------------------------------------

    def wake(self, routes: Sequence[str]) -> None:
        for route in routes:
            self._dirty[route] = None
        self._wake_dispatch.set()

    def wake_all(self) -> None:
        self._dirty_all = True
        self._wake_dispatch.set()
        self._wake_timers.set()

    def on_changes(self, changes: Sequence[Change]) -> None:
        """Store listener: count, publish (commands, upstream events, cancel notices), and
        nudge the loops."""
        now = self.clock.now()
        loop = asyncio.get_running_loop()
        # One commit may hold several changes of an execution (created, then sent at once):
        # what waits for dispatch is decided by where each one ends.
        final = {c.after.id: c.after.state for c in changes}
        outbox = self._outbox
        transitions: dict[tuple[str, str], int] = {}  # counted once per commit, not per change
        for change in changes:
            before, after = change.before, change.after
            state_changed = change.state_changed  # read once: a property
            if state_changed or change.dispatch is not None:
                outbox.append(change)
            if state_changed:
                key = ("NEW" if before is None else before.state, after.state)
                transitions[key] = transitions.get(key, 0) + 1
                if after.state in TERMINAL:
                    self.metrics.observe_latency(
                        after.state, max(0.0, after.updated_at - after.created_at)
                    )
            if (
                after.state is S.QUEUED
                and (before is None or before.state is not S.QUEUED)
                and final[after.id] is S.QUEUED
            ):
                self._backlog.add(after.route_id)
                if after.not_before <= now:
                    self._dirty[after.route_id] = None
                    self._wake_dispatch.set()
                else:
                    loop.call_later(after.not_before - now, self.wake, [after.route_id])
            elif (
                before is not None
                and before.state in IN_FLIGHT
                and after.state != before.state
                and after.route_id in self._backlog
            ):
                self._dirty[after.route_id] = None
                self._wake_dispatch.set()
            if after.wake_at is not None and (
                self._next_timer is None or after.wake_at < self._next_timer
            ):
                self._next_timer = after.wake_at
                self._wake_timers.set()
        for (from_state, to_state), count in transitions.items():
            self.metrics.count_transition(from_state, to_state, count)
        if self._outbox_due:
            return  # published in order with what is already waiting
        if len(outbox) > PUBLISH_LATER_OVER:
            # A big commit (a fan-out): its writer answers first, its publishing follows.
            # The writer resumes one loop iteration after this listener, so two are needed.
            self._outbox_due = True
            loop.call_soon(loop.call_soon, self._publish_outbox)
        else:
            self._publish_outbox()

    @property
    def publishing(self) -> bool:
        """Committed changes still wait to be published (a big commit goes out in slices)."""
        return self._outbox_due or bool(self._outbox)

    def _publish_outbox(self) -> None:
        """The commands, upstream events and cancel notices of the commits heard, in commit
        order (a command and the notice that cancels it never cross)."""
        outbox = self._outbox
        if len(outbox) > PUBLISH_SLICE:
            due: Iterable[Change] = [outbox.popleft() for _ in range(PUBLISH_SLICE)]
            self._outbox_due = True
            asyncio.get_running_loop().call_soon(self._publish_outbox)  # the next slice
        else:
            due, self._outbox = outbox, deque()
            self._outbox_due = False
        now = self.clock.now()
        published = 0
        for change in due:
            before, after = change.before, change.after
            if change.dispatch is not None:
                published += self._publish_one(change.dispatch, now)
            if change.state_changed:
                self._publish_event(change)
                if (
                    after.state is S.CANCELLED
                    and before is not None
                    and before.state is not S.CANCELLED
                    and before.attempt > 0
                ):
                    self._send_cancel_notice(after.route_id, after.id)
        if published:
            self.metrics.published.inc(published)

    # --- dispatch ----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake_dispatch.wait()
            self._wake_dispatch.clear()
            if self._stopping:
                return
            if not self.transport.connected:
                continue
            await self.dispatch_once()

    async def dispatch_once(self) -> int:
        """Claim what is due: everything after a wake_all, else the dirty routes. The commit
        listener publishes the claimed sends (as it does those created already SENT).

        The time is read for each claim: work created while a claim runs has a later
        `not_before` than a time read before it, and must not be skipped.
        """
        sent = 0
        if self._dirty_all:
            self._dirty_all = False
            self._dirty.clear()
            while True:
                claimed = await self.store.claim_due(
                    None, self.clock.now(), self.config.claim_batch, self.config.in_flight
                )
                sent += len(claimed)
                if len(claimed) < self.config.claim_batch or self._stopping:
                    break
        while self._dirty and not self._stopping:
            routes = list(self._dirty)[: self.config.routes_per_claim]
            for route in routes:
                del self._dirty[route]
            claimed = await self.store.claim_due(
                routes, self.clock.now(), self.config.claim_batch, self.config.in_flight
            )
            sent += len(claimed)
            served = {d.execution.route_id for d in claimed}
            self._backlog.difference_update(r for r in routes if r not in served)
            if len(claimed) >= self.config.claim_batch:
                for route in routes:
                    self._dirty[route] = None
        return sent

    def _publish_one(self, dispatch: Dispatch, now: float) -> int:
        """Publish a committed send; 0 if the broker is away (the ack timeout resends it)."""
        execution = dispatch.execution
        if execution.route_id in self.lwm2m.endpoints:
            return self.lwm2m.publish(dispatch, now)
        attached = execution.device_id if execution.device_id != execution.route_id else None
        if self.files is not None:
            args = with_links(
                self.files.ready_links,
                execution.tenant,
                execution.id,
                execution.command,
                dispatch.args,
                now,
            )
            if args is not dispatch.args:
                dispatch = Dispatch(execution, args, dispatch.request_created_at)
        try:
            self.transport.publish(
                self.topics.command(execution.route_id, execution.id),
                envelope_bytes(dispatch, device=attached),
                qos=1,
                expiry=max(1, int(execution.expires_at - now)),
            )
        except TransportError as exc:
            self.metrics.publish_errors.inc()
            log.warning("publish failed: %s", exc, extra={"execution": execution.id})
            return 0
        return 1

    def _send_cancel_notice(self, route: str, execution_id: str) -> None:
        try:
            self.transport.publish(
                self.topics.command(route, execution_id), cancel_bytes(execution_id)
            )
            self.metrics.cancel_notices.inc()
        except TransportError as exc:
            log.warning("cancel notice not sent: %s", exc, extra={"execution": execution_id})

    def _publish_event(self, change: Change) -> None:
        if not self.config.publish_events:
            return
        after = change.after
        try:
            self.transport.publish(self.topics.events(after.tenant), event_bytes(change), qos=0)
        except TransportError:
            log.debug("event not published (broker away)", extra={"execution": after.id})

    # --- timers ------------------------------------------------------------------------

    async def fire_timers_once(self) -> int:
        """Apply every passed deadline (expiry, missing ack, timeout); answers how many."""
        fired = 0
        while True:
            changes = await self.store.fire_timers(self.clock.now(), self.config.timer_batch)
            fired += len(changes)
            if len(changes) < self.config.timer_batch:
                return fired

    async def _timer_loop(self) -> None:
        while not self._stopping:
            self._wake_timers.clear()
            await self.fire_timers_once()
            self._next_timer = await self.store.next_wake_at()
            delay = self.config.sweep_interval
            if self._next_timer is not None:
                delay = min(delay, max(0.0, self._next_timer - self.clock.now()))
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_timers.wait(), delay)

    async def _sweep_loop(self) -> None:
        """The safety net: periodically look at the whole store for due work."""
        while not self._stopping:
            await asyncio.sleep(self.config.sweep_interval)
            self._dirty_all = True
            self._wake_dispatch.set()
            await self.lwm2m.expire_leases()
