"""Offline benchmark metrics: ChartMimic's low-level scores (:mod:`.chartmimic`), Design2Code's visual
scores (:mod:`.design2code`), AeSlides' layout rewards (:mod:`.aeslides`), and ``vsdpo eval`` (:mod:`.cli`).

Submodules are imported on use: ``from vsdpo.metrics import chartmimic``.
"""
