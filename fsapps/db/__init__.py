"""PostgreSQL, the configuration of record and the CDR store.

``fsapps.db.connection`` opens connections and pools them (pools live in that module, which
FreeSWITCH does not reload); ``fsapps.db.migrations`` owns the schema
(``fsapps/db/schema/NNNN_<name>.sql``, applied by ``fsapps db migrate``).
"""

from fsapps.db.connection import (
    DatabaseUnavailableError,
    Pool,
    close_pools,
    connect,
    get_pool,
    transaction,
)
from fsapps.db.migrations import current_version, migrate

__all__ = ["DatabaseUnavailableError", "Pool", "close_pools", "connect", "current_version",
           "get_pool", "migrate", "transaction"]
