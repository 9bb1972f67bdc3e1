"""Draw the defects of a render onto its picture: one coloured box per element concerned, labelled."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from vsdpo.render.types import RenderResult

DEFECT_COLORS = {
    "overlap": (230, 25, 75),
    "clipped_text": (245, 130, 48),
    "overflow": (145, 30, 180),
    "misalignment": (0, 130, 200),
    "low_contrast": (60, 180, 75),
}


def annotate(result: RenderResult, *, line_width: int = 2) -> bytes:
    """PNG bytes of ``result.image`` with a box around every element of every defect."""
    if result.image is None:
        raise ValueError("result: expected a render with an image, got one without (the program failed?)")
    image = Image.open(io.BytesIO(result.image)).convert("RGB")
    draw = ImageDraw.Draw(image)
    boxes = {element.id: element.bbox for element in result.elements}
    for number, defect in enumerate(result.defects, start=1):
        color = DEFECT_COLORS.get(defect.kind, (255, 0, 0))
        for element_id in defect.elements:
            if element_id not in boxes:
                continue
            x0, y0, x1, y1 = boxes[element_id]
            # Clamp into the picture so that boxes past the edge (overflow) still show.
            x0, x1 = max(0, min(x0, image.width - 1)), max(0, min(x1, image.width - 1))
            y0, y1 = max(0, min(y0, image.height - 1)), max(0, min(y1, image.height - 1))
            draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=color, width=line_width)
            lines = ",".join(map(str, defect.lines[:3]))
            draw.text((x0 + 2, max(0, y0 - 11)), f"{number} {defect.kind} L{lines}", fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
