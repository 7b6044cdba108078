"""Durable storage: the `Store` seam and its backends (memory, SQLite)."""

from courier.store.base import Store
from courier.store.factory import open_store
from courier.store.filters import DeviceFilter, ExecutionFilter, RequestFilter

__all__ = ["DeviceFilter", "ExecutionFilter", "RequestFilter", "Store", "open_store"]
