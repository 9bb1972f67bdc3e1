"""The method's middle: from a rendered program to what training uses of it.

Both trainers (``vsdpo.train`` and ``vsdpo.integrations.trl``) go through these modules, so that the
same completion gets the same reward, the same feedback and the same credit in either:

- :mod:`vsdpo.feedback.rewards`: the scalar reward of a render (and ``VisualReward``, TRL's reward
  function); a render failed by a fault of the system (``RenderResult.fault == "system"``) is never
  scored as the program's;
- :mod:`vsdpo.feedback.differences`: how a render differs from the task's target, as defects;
- :mod:`vsdpo.feedback.teacher_context`: the feedback text the teacher reads;
- :mod:`vsdpo.feedback.credit`: the program in a completion, and each token's credit weight;
- :mod:`vsdpo.feedback.spans`: a completion's text and each token's character span;
- :mod:`vsdpo.feedback.rendering`: the render pool and its retry policy;
- :mod:`vsdpo.feedback.builder`: one completion's teacher context and token credit, from the above.
"""
