from .keys import KEY_PREFIX, hash_key
from .records import Duplicate, KeyRecord, RateLimit, StoreUnavailable, Ticket, UsageRecord
from .store import Store, open_store

__all__ = ["Store", "open_store", "KeyRecord", "RateLimit", "Ticket", "UsageRecord", "StoreUnavailable",
           "Duplicate", "KEY_PREFIX", "hash_key"]
