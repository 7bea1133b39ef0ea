"""The community registry server: gate enrolment, upload ingest, registry feed.

    from sync.server import create_app
    app = create_app("sqlite:///var/registry.db")     # or "postgresql://..."
"""

from sync.server.app import create_app
from sync.server.db import DEFAULT_DB_URL, open_database

__all__ = ["create_app", "open_database", "DEFAULT_DB_URL"]
