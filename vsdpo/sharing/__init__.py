"""Student and teacher passes that share work: a group's prompt is encoded once for all its rollouts.

    from vsdpo.sharing import RolloutGroup, student_teacher_hidden
    group = RolloutGroup.from_text(processor, prompt, responses, feedbacks, prompt_images=[target])
    hs, ht = student_teacher_hidden(model, group)

Modules, each depending only on those above it:

- ``build``: the token ids and image patches of a group, from plain text and PIL images;
- ``group``: ``RolloutGroup``, one prompt and its G rollouts, checked when made;
- ``rows``: the continuations (context and response) of several rollouts as one padded batch;
- ``model``: the base model's forward, the sequences' positions, the replay-safe caches;
- ``passes``: ``student_teacher_hidden``, the shared passes and the plain reference passes.
"""

from __future__ import annotations

from vsdpo.sharing.group import RolloutGroup
from vsdpo.sharing.passes import StudentTeacherHidden, student_teacher_hidden

__all__ = ["RolloutGroup", "StudentTeacherHidden", "student_teacher_hidden"]
