"""vsdpo: Self-Distillation Policy Optimization via Visual Feedback.

Layers: ``vsdpo_kernels`` (the fused loss), ``vsdpo.render`` (visual feedback), ``vsdpo.credit``,
``vsdpo.metrics``, ``vsdpo.sharing`` (prefix KV reuse) and ``vsdpo.train`` (the trainer).
"""

__version__ = "0.1.0"
