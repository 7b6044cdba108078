"""Route modules of the native /v1 API."""
