"""Redis, the shared working set: one client per process, every key name, Lua scripts.

``connection`` builds the client (URL, Sentinel or Cluster, retrying, cached per settings),
``keys`` names every key, ``scripts`` runs the Lua files of ``fsapps/store/lua`` by EVALSHA.
"""

from fsapps.store.connection import (
    HashFields,
    RedisClient,
    close_clients,
    hash_fields,
    json_object,
    redis_client,
    store_errors,
)
from fsapps.store.keys import KeyPartError, Keys, NodeKeys
from fsapps.store.scripts import SCRIPTS, Scripts, run_script

__all__ = [
    "SCRIPTS",
    "HashFields",
    "KeyPartError",
    "Keys",
    "NodeKeys",
    "RedisClient",
    "Scripts",
    "close_clients",
    "hash_fields",
    "json_object",
    "redis_client",
    "run_script",
    "store_errors",
]
