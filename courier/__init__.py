"""Courier delivers commands to devices over MQTT and never loses one."""

from courier.errors import CourierError

__version__ = "0.1.0"

__all__ = ["CourierError", "__version__"]
