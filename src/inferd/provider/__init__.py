"""The provider layer: who may call what, how much, and what it cost (keys, limits, pricing, usage)."""
