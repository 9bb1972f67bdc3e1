"""vsdpo inside other trainers.

- :mod:`vsdpo.integrations.trl`: ``VisualSDPOTrainer``, TRL's ``GRPOTrainer`` with the fused loss and
  the Visual-SDPO teacher pass (needs the ``trl`` extra: ``pip install 'vsdpo[trl]'``).

Nothing is imported here, so that ``import vsdpo.integrations`` works without the optional trainers.
"""
