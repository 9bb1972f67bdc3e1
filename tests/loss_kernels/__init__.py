"""Tests of ``vsdpo_kernels``, laid out like the package; ``cases.py`` holds what they share."""
