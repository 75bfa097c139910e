"""The sqlite-utils store: database, migrations and the event log."""

from engine.store.db import IllegalTransition, Store, StoreError, open_store
from engine.store.migrations import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "IllegalTransition", "Store", "StoreError", "open_store"]
