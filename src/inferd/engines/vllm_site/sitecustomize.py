"""On the ``PYTHONPATH`` of the processes inferd runs vLLM in (its server, the weight conversion).

pip installs ``torchvision``, ``torchaudio`` and ``torchcodec`` with vLLM, and beside a CPU-only torch
their prebuilt wheels fail to import (a missing operator, a missing CUDA library) with errors that
are not ``ImportError``. vLLM and transformers treat them as optional, but only when they are
absent. inferd finds out once which of them fail (``python -m inferd.engines.vllm_prepare probe``)
and names those in ``INFERD_VLLM_ABSENT``; here they are marked absent for this process, so that
importing them raises ``ImportError``. Nothing is imported here.
"""

import os
import sys

for _name in filter(None, os.environ.get("INFERD_VLLM_ABSENT", "").split(",")):
    sys.modules[_name] = None  # type: ignore[assignment]
