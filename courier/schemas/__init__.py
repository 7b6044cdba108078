"""Pydantic models for every REST body and MQTT payload, and the execution states."""
