"""vsdpo: Self-Distillation Policy Optimization via Visual Feedback.

Layers: ``vsdpo_kernels`` (the fused loss), ``vsdpo.render`` (visual feedback), ``vsdpo.metrics``
(the benchmarks' scores), ``vsdpo.feedback`` (rewards, feedback text and credit, shared by both
trainers), ``vsdpo.sharing`` (prefix KV reuse), ``vsdpo.train`` (the trainer) and
``vsdpo.integrations`` (TRL).
"""

__version__ = "0.1.0"
