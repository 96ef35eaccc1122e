"""Guard a child process's network when INFERD_TEST_NETGUARD=1 (put this folder on PYTHONPATH).

Loads ``tests/netguard.py`` by path (so ``tests/`` itself is not put on sys.path) and blocks
the ``uvloop`` import: uvloop connects in C, past the socket patches, so uvicorn's "auto"
loop falls back to asyncio.
"""

import os
import sys

if os.environ.get("INFERD_TEST_NETGUARD") == "1":
    import importlib.util

    _path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netguard.py")
    _spec = importlib.util.spec_from_file_location("inferd_test_netguard", _path)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["inferd_test_netguard"] = _module
    _spec.loader.exec_module(_module)
    _module.install()
    sys.modules.setdefault("uvloop", None)  # type: ignore[arg-type]
