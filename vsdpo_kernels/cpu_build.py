"""Builds the C++ CPU kernel ahead of first use: ``python -m vsdpo_kernels.cpu_build``.

The set-up runs it once so that the first training step does not pay the compile; torch caches
the build (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``).
"""

import sys

from vsdpo_kernels import cpu

if __name__ == "__main__":
    if cpu.available(warn=True):
        print("vsdpo_kernels: C++ CPU kernel ready")
    else:
        print("vsdpo_kernels: C++ CPU kernel unavailable; impl='auto' will use the torch implementation")
    sys.exit(0)
