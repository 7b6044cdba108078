"""The engine: store -> MQTT dispatch, MQTT -> store replies and presence, timers."""

from courier.bridge.engine import Bridge, BridgeConfig

__all__ = ["Bridge", "BridgeConfig"]
