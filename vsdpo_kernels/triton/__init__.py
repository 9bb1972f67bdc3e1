"""The GPU backend (``impl="triton"``): one Triton kernel per file, each beside its launcher.

- ``common.py``: the device functions every kernel uses (a logits tile, the mixture's log) and the
  launch settings of one call (tile sizes, warps, product precision).
- ``stats.py``: the stats pass, an online log-sum-exp over the vocabulary for student and teacher.
- ``mixture.py``: the second pass of the mixture JSD (0 < beta < 1).
- ``backward.py``: the gradient pass, ``dZ @ W`` and ``dZ.T @ hs`` tile by tile.
- ``backend.py``: ``stats`` and ``grads``, the ``Backend`` contract, wiring the passes together.

This package imports nothing itself: triton is imported when ``backend.py`` (or a kernel) is, which
``vsdpo_kernels.backend`` does only when ``impl="triton"`` is used.
"""
