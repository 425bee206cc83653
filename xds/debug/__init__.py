"""The operator's view: health, readiness and read-only debug endpoints (aiohttp)."""
