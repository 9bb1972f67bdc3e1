"""The one result type of every renderer, as plain data that crosses process boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFECT_KINDS: tuple[str, ...] = ("overlap", "clipped_text", "overflow", "misalignment", "low_contrast")
ARTIFACT_KINDS: tuple[str, ...] = ("chart", "web", "slides")
# Whose fault a failed render is (``RenderResult.fault``). The program's: it raised or drew nothing
# ("program", and "exception" where the job's entry raised), it ran into a limit of its own job
# ("timeout", "memory", "cpu_limit", "file_size", "output_limit"), it ended its own process ("exited",
# "killed": a signal reaches the job's process only from the job itself or its limits), or its
# source was too large. The system's: the sandbox could not run it or lost its worker ("sandbox"), the
# renderer failed ("internal", "browser"), or what came back could not be trusted ("invalid_reply").
# A system fault says nothing of the program: the trainers retry it once, then leave the rollout out
# of rewards, advantages, distillation and credit, and never show it to the teacher.
PROGRAM_FAULTS: frozenset[str] = frozenset(
    {
        "program",
        "exception",
        "timeout",
        "memory",
        "cpu_limit",
        "file_size",
        "output_limit",
        "exited",
        "killed",
        "too_large",
    }
)
SYSTEM_FAULTS: frozenset[str] = frozenset({"sandbox", "internal", "browser", "invalid_reply"})


@dataclass
class Element:
    """One drawn element: its box in image pixels and the 1-based source lines that made or styled it."""

    id: str
    role: str  # "text", "axes", "legend", "patch", "line", "image", "shape", "block", ...
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1), image pixels, y down
    text: str | None = None
    color: str | None = None  # "#rrggbb" where known
    background: str | None = None  # "#rrggbb" where known
    lines: list[int] = field(default_factory=list)
    parent: str | None = None  # id of the containing element, where known
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Defect:
    """A visual defect, traced to the elements it concerns and the source lines behind them."""

    kind: str  # one of DEFECT_KINDS
    severity: float  # in (0, 1]
    elements: list[str]
    lines: list[int]
    message: str


@dataclass
class RenderResult:
    kind: str
    ok: bool
    error: str | None = None
    error_lines: list[int] = field(default_factory=list)
    image: bytes | None = None  # PNG
    width: int | None = None
    height: int | None = None
    elements: list[Element] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)
    elapsed_s: float = 0.0
    # Why a render failed: "program" (it raised, or drew nothing), a sandbox limit ("timeout", "memory",
    # "cpu_limit", "file_size", "output_limit", "killed", "exited", "exception"), "sandbox" (the
    # sandbox could not run it), "invalid_reply" (what came back broke its schema or bounds),
    # "too_large" (the input), "browser" (Chromium failed) or "internal" (a fault of the renderer).
    error_kind: str | None = None
    # What the render's own run recorded for a scorer when the caller asked, by scorer: "chartmimic",
    # the program's ChartMimic trace (vsdpo.metrics.chartmimic.recorded_trace), None where that run
    # could not record it; the scorer then runs the program apart.
    record: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def fault(self) -> str | None:
        """None when the program ran; ``"program"`` or ``"system"`` when it did not (see
        :data:`SYSTEM_FAULTS`); an unknown ``error_kind`` counts as the system's."""
        if self.ok:
            return None
        return "program" if self.error_kind in PROGRAM_FAULTS or self.error_kind is None else "system"

    def to_dict(self, *, with_image: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["image"] = self.image if with_image else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderResult:
        data = dict(data)
        data["elements"] = [Element(**{**e, "bbox": tuple(e["bbox"])}) for e in data.get("elements", [])]
        data["defects"] = [Defect(**d) for d in data.get("defects", [])]
        return cls(**data)

    @classmethod
    def failure(
        cls, kind: str, error: str, error_lines: list[int] | None = None, error_kind: str = "program"
    ) -> RenderResult:
        return cls(
            kind=kind, ok=False, error=error, error_lines=list(error_lines or []), error_kind=error_kind
        )
