"""The device-side SDK: an `Agent` that receives commands, runs handlers once, and replies."""

from courier.gateway.agent import Agent, CommandContext, CommandFailed
from courier.gateway.relay import DeviceAdapter, GatewayAgent, SimulatedLink
from courier.gateway.replylog import ReplyLog

__all__ = [
    "Agent",
    "CommandContext",
    "CommandFailed",
    "DeviceAdapter",
    "GatewayAgent",
    "ReplyLog",
    "SimulatedLink",
]
