"""Prometheus metrics, in a registry of their own (one per service, so tests stay apart)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.transitions = Counter(
            "courier_transitions",
            "Execution state changes.",
            ["from_state", "to_state"],
            registry=r,
        )
        self.published = Counter(
            "courier_commands_published", "Command envelopes published.", registry=r
        )
        self.cancel_notices = Counter(
            "courier_cancel_notices_published", "Cancel notices published.", registry=r
        )
        self.replies = Counter(
            "courier_replies", "Device replies by outcome.", ["outcome"], registry=r
        )
        self.rejected = Counter(
            "courier_mqtt_rejected",
            "MQTT messages rejected (never change a state), by topic kind and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.presence = Counter(
            "courier_presence_updates", "Presence messages applied.", ["online"], registry=r
        )
        self.publish_errors = Counter(
            "courier_publish_errors", "Publishes that failed (resent later).", registry=r
        )
        self.executions = Gauge(
            "courier_executions", "Non-terminal executions by state.", ["state"], registry=r
        )
        self.connected = Gauge(
            "courier_broker_connected", "1 while connected to the broker.", registry=r
        )
        self.latency = Histogram(
            "courier_execution_seconds",
            "Time from creation to a terminal state.",
            ["state"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.http_requests = Counter(
            "courier_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )

        self._transition_children: dict[tuple[str, str], Any] = {}
        self._http_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def count_transition(self, from_state: str, to_state: str, count: int = 1) -> None:
        key = (from_state, to_state)
        child = self._transition_children.get(key)
        if child is None:
            child = self._transition_children[key] = self.transitions.labels(*key)
        child.inc(count)

    def observe_latency(self, state: str, seconds: float) -> None:
        child = self._latency_children.get(state)
        if child is None:
            child = self._latency_children[state] = self.latency.labels(state)
        child.observe(seconds)

    def count_http(self, method: str, route: str, status: str) -> None:
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_requests.labels(*key)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
