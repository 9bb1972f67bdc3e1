"""Builds (or finds in the cache) the C++ CPU extension; `python -m vsdpo_kernels.cpu_build`."""
