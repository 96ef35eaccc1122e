from .db import Store
from .keys import ApiKey, KEY_PREFIX

__all__ = ["Store", "ApiKey", "KEY_PREFIX"]
