"""A local X API v2 sandbox (home timeline, users/me, pbs-style media, faults on demand) for tests and demos.

``Sandbox`` serves the bundled sample timeline (``timeline.json``, built from ``service/samples`` by
``build_timeline.py``) on 127.0.0.1, and past its end posts generated from it without end (``timeline_data``); run
it standalone with ``python -m service.sandbox --port 8788``.
"""

from .server import Fault, RequestRecord, Sandbox
from .timeline_data import TWITTER_EPOCH_MS, snowflake, snowflake_ms

__all__ = ["TWITTER_EPOCH_MS", "Fault", "RequestRecord", "Sandbox", "snowflake", "snowflake_ms"]
