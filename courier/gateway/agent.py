"""The device agent: connect, receive commands, run each once, report its progress and result.

    agent = Agent("pump-7", password="...", broker="mqtt://127.0.0.1:1883")

    @agent.handler("REBOOT")
    async def reboot(ctx: CommandContext) -> dict[str, object]:
        await ctx.progress(50)
        return {"rebooted": True}

    await agent.run()          # until cancelled

Delivery is at least once; the agent makes execution exactly once by remembering every
execution id (`ReplyLog`): a duplicate is answered with the last reply instead of being run
again. Only a retry that Courier sends after a reported failure (a higher attempt) runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from courier.clock import Clock, SystemClock
from courier.errors import CourierError
from courier.gateway.replylog import Record, ReplyLog
from courier.schemas.mqtt import CommandEnvelope, presence_bytes
from courier.topics import TopicKind, Topics
from courier.transport import ConnectOptions, Message, Transport, Will
from courier.transport.gmqtt_transport import GmqttTransport

log = logging.getLogger(__name__)
REPLAY_WINDOW = 600.0


class CommandFailed(CourierError):
    """The command failed on the device."""

    def __init__(self, reason: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.output = output


@dataclass
class CommandContext:
    """What a handler gets: the command and a way to report progress."""

    execution_id: str
    request_id: str
    command: str
    args: dict[str, Any]
    attempt: int
    expires_at: datetime
    timeout: float
    device: str | None
    agent: Agent = field(repr=False)

    async def progress(self, percent: int, reason: str | None = None) -> None:
        """Report IN_PROGRESS with a percentage (0-100)."""
        self.agent._reply(self.execution_id, "IN_PROGRESS", reason=reason, progress=percent)


Handler = Callable[[CommandContext], Awaitable[dict[str, Any] | None]]


class Agent:
    """One device's connection to Courier."""

    def __init__(
        self,
        device_id: str,
        password: str | None = None,
        broker: str = "mqtt://127.0.0.1:1883",
        prefix: str = "courier",
        transport: Transport | None = None,
        replies: ReplyLog | None = None,
        report_started: float | None = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.device_id = device_id
        self.clock: Clock = clock or SystemClock()
        self.topics = Topics(prefix)
        self.replies = replies if replies is not None else ReplyLog()
        self.report_started = report_started
        self.runs: Counter[str] = Counter()
        self.received = 0
        self._not_run = 0
        self._handlers: dict[str, Handler] = {}
        self._default: Handler | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._subscribed = False
        if transport is None:
            transport = self.default_transport(device_id, password, broker, prefix)
        self.transport = transport
        transport.on_message = self._on_message
        transport.on_connect = self._on_connect
        for record in self.replies.unfinished():
            # It was running when the agent stopped: it did not finish here, say so.
            self._finish(
                record, "FAILED", reason="interrupted: the agent restarted while running it"
            )

    @staticmethod
    def default_transport(
        device_id: str, password: str | None, broker: str, prefix: str = "courier"
    ) -> Transport:
        """A persistent-session connection as the device, with its offline presence as Will."""
        return GmqttTransport(
            ConnectOptions.from_url(
                broker,
                client_id=device_id,
                username=device_id,
                password=password,
                clean_start=False,
                will=Will(Topics(prefix).presence(device_id), presence_bytes(False)),
            )
        )

    @property
    def duplicates(self) -> int:
        """Deliveries answered from the reply log instead of being run."""
        return self.received - sum(self.runs.values()) - self._not_run

    # --- handlers ----------------------------------------------------------------------

    def handler(self, command: str) -> Callable[[Handler], Handler]:
        """Register the handler of `command` (decorator)."""

        def register(fn: Handler) -> Handler:
            self._handlers[command] = fn
            return fn

        return register

    def default_handler(self, fn: Handler) -> Handler:
        """Register the handler of every command without its own."""
        self._default = fn
        return fn

    # --- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, subscribe, then say online: a command sent the moment the agent looked
        online would otherwise reach a session not yet subscribed, and be dropped until its
        ack timeout resent it."""
        await self.transport.connect()
        await self.transport.subscribe([self.topics.commands_of(self.device_id)], qos=1)
        self._subscribed = True
        self._announce()

    async def stop(self, offline: bool = True) -> None:
        """Stop: cancel running handlers, say offline (retained), disconnect."""
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if offline and self.transport.connected:
            self.transport.publish(
                self.topics.presence(self.device_id), presence_bytes(False), qos=1, retain=True
            )
            await asyncio.sleep(0.05)
        await self.transport.disconnect()
        self._subscribed = False  # a later start() subscribes, then announces, again

    async def run(self) -> None:
        """Start and serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _on_connect(self, session_present: bool) -> None:
        """After a reconnect the transport has sent its SUBSCRIBE before this runs, so the
        broker takes it before the presence; the first connect is announced by start()."""
        if self._subscribed:
            self._announce()

    def _announce(self) -> None:
        """Online (retained), and the recent replies again for a Courier that missed them."""
        try:
            self.transport.publish(
                self.topics.presence(self.device_id), presence_bytes(True), qos=1, retain=True
            )
            for record in self.replies.recent(time.time() - REPLAY_WINDOW):
                self._publish_reply(record)
        except CourierError as exc:
            log.warning("could not announce presence: %s", exc)

    # --- commands ----------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        parsed = self.topics.parse(message.topic)
        if (
            parsed is None
            or parsed.kind is not TopicKind.COMMAND
            or parsed.device != self.device_id
        ):
            log.warning("ignoring message on %s", message.topic)
            return
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            log.warning("ignoring a command that is not JSON", extra={"topic": message.topic})
            return
        if isinstance(body, dict) and body.get("cancel") is True:
            self._cancel(str(body.get("id", parsed.execution)))
            return
        try:
            envelope = CommandEnvelope.model_validate(body)
        except ValidationError as exc:
            log.warning("ignoring an invalid command: %s", exc, extra={"topic": message.topic})
            return
        self.received += 1
        self._accept(envelope)

    def _accept(self, envelope: CommandEnvelope) -> None:
        record = self.replies.get(envelope.id)
        if record is not None:
            rerun = record.state == "FAILED" and envelope.attempt > record.attempt
            if not rerun:
                record.attempt = max(record.attempt, envelope.attempt)
                self.replies.put(record)
                self._publish_reply(record)
                return
        record = Record(envelope.id, envelope.attempt, "RECEIVED")
        expires_at = datetime.fromisoformat(envelope.expires_at.replace("Z", "+00:00"))
        if expires_at.timestamp() <= self.clock.now():
            self._not_run += 1
            self._finish(record, "FAILED", reason="expired before it could run on the device")
            return
        self.replies.put(record)
        self._reply(envelope.id, "ACKNOWLEDGED")
        context = CommandContext(
            execution_id=envelope.id,
            request_id=envelope.request,
            command=envelope.command,
            args=envelope.args,
            attempt=envelope.attempt,
            expires_at=expires_at,
            timeout=envelope.timeout,
            device=envelope.device,
            agent=self,
        )
        task = asyncio.get_running_loop().create_task(self._run(context))
        self._tasks[envelope.id] = task
        task.add_done_callback(lambda _task: self._tasks.pop(envelope.id, None))

    def _handler_for(self, ctx: CommandContext) -> Handler | None:
        return self._handlers.get(ctx.command, self._default)

    async def _run(self, ctx: CommandContext) -> None:
        handler = self._handler_for(ctx)
        record = self.replies.get(ctx.execution_id)
        assert record is not None
        if handler is None:
            self._not_run += 1
            self._finish(record, "FAILED", reason=f"unknown command {ctx.command}")
            return
        self.runs[ctx.execution_id] += 1
        started: asyncio.TimerHandle | None = None
        if self.report_started == 0:
            self._reply(ctx.execution_id, "IN_PROGRESS")
        elif self.report_started is not None:
            started = asyncio.get_running_loop().call_later(
                self.report_started, self._report_running, ctx.execution_id
            )
        try:
            async with asyncio.timeout(ctx.timeout):
                output = await handler(ctx)
        except CommandFailed as exc:
            self._finish(record, "FAILED", reason=exc.message, output=exc.output)
        except TimeoutError:
            self._finish(
                record, "FAILED", reason=f"timed out on the device after {ctx.timeout:g} s"
            )
        except asyncio.CancelledError:
            self._finish(record, "FAILED", reason="cancelled")
            raise
        except Exception as exc:  # a handler's bug is the command's failure, not the agent's
            log.exception("handler of %s failed", ctx.command)
            self._finish(record, "FAILED", reason=f"{type(exc).__name__}: {exc}")
        else:
            self._finish(record, "SUCCEEDED", output=output)
        finally:
            if started is not None:
                started.cancel()

    def _report_running(self, execution_id: str) -> None:
        """IN_PROGRESS for a handler still running after `report_started` seconds."""
        record = self.replies.get(execution_id)
        if record is not None and record.state == "ACKNOWLEDGED":
            self._reply(execution_id, "IN_PROGRESS")

    def _cancel(self, execution_id: str) -> None:
        task = self._tasks.get(execution_id)
        if task is not None:
            task.cancel()
            return
        record = self.replies.get(execution_id)
        if record is None:
            self.replies.put(Record(execution_id, 1, "CANCELLED"))
        elif not record.finished:
            self._finish(record, "FAILED", reason="cancelled")

    def notify(self, execution_id: str, data: dict[str, Any]) -> None:
        """Report a change of what an observe command watches (its handler has returned;
        Courier keeps each as an event of that execution until an observe_stop)."""
        try:
            self.transport.publish(
                self.topics.notification(self.device_id, execution_id), orjson.dumps(data), qos=1
            )
        except CourierError as exc:
            log.info("notification not sent (%s)", exc)

    # --- replies -----------------------------------------------------------------------

    def _finish(
        self, record: Record, state: str, reason: str | None = None, output: Any = None
    ) -> None:
        record.state = state
        self.replies.put(record)
        self._reply(record.execution_id, state, reason=reason, output=output)

    def _reply(
        self,
        execution_id: str,
        state: str,
        reason: str | None = None,
        progress: int | None = None,
        output: Any = None,
    ) -> None:
        record = self.replies.get(execution_id)
        attempt = record.attempt if record is not None else 1
        body: dict[str, Any] = {"state": state, "attempt": attempt}
        if reason is not None:
            body["reason"] = reason
        if progress is not None:
            body["progress"] = progress
        if output is not None:
            body["output"] = output
        if record is not None:
            if not record.finished:
                record.state = state
            record.reply = body
            self.replies.put(record)
            self._publish_reply(record)
        else:
            self._send(execution_id, body)

    def _publish_reply(self, record: Record) -> None:
        if record.reply is None:
            return
        body = dict(record.reply)
        body["attempt"] = record.attempt
        self._send(record.execution_id, body)

    def _send(self, execution_id: str, body: dict[str, Any]) -> None:
        try:
            self.transport.publish(
                self.topics.reply(self.device_id, execution_id), orjson.dumps(body), qos=1
            )
        except CourierError as exc:
            # Kept in the reply log; replayed on reconnect or answered to the resend.
            log.info("reply not sent now (%s); it will be replayed", exc)
