"""The PostgreSQL store's parts that a reader of its tables (the analytics) builds on.

The schema is the store's: `migrate` brings a schema to the store's version (the one
`infobip_voicelogs.postgres.SCHEMA_VERSION` names), and `quote_ident` writes a schema's
name into SQL. Users take the store's public names from `infobip_voicelogs.postgres`.
"""

from __future__ import annotations

from ._schema import migrate, quote_ident

__all__ = ["migrate", "quote_ident"]
