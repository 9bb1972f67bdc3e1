"""Provenance for python-pptx programs: which user lines made or styled each shape.

``install()`` wraps the shape factories (``add_textbox``, ``add_shape``, ``add_picture``,
``add_table``, ``add_chart``, ...), placeholder look-ups and the text, font, fill and geometry setters.
Each call made from the user's program (compiled under ``USER_FILENAME``) records its line against the
shape it concerns, found from the XML element the python-pptx object wraps, under a category that
says what the line decided: ``create``, ``geometry``, ``text``, ``font`` or ``fill``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

from pptx.dml.color import ColorFormat
from pptx.dml.fill import FillFormat
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.shapetree import SlidePlaceholders, SlideShapes, _BaseGroupShapes
from pptx.text.text import Font, TextFrame, _Paragraph, _Run

from vsdpo.render.user_code import innermost_line

USER_FILENAME = "<slides>"
_SHAPE_TAGS = ("}sp", "}pic", "}graphicFrame", "}cxnSp", "}grpSp")
_XML_ATTRIBUTES = ("_element", "_txBody", "_p", "_r", "_rPr", "_pPr", "_xPr", "_xFill", "_tc", "_parent")

# (shape tree root id, shape id) -> {line: {category, ...}}
provenance: dict[tuple[int, int], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
_installed = False


def user_line() -> int | None:
    """The line of the innermost frame that belongs to the user's program."""
    return innermost_line(USER_FILENAME, skip=1)


def xml_of(obj: Any, depth: int = 0) -> Any:
    """The lxml element a python-pptx proxy object wraps (following its parents a few steps)."""
    if hasattr(obj, "getparent"):
        return obj
    if depth > 3:
        return None
    for name in _XML_ATTRIBUTES:
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj:
            found = xml_of(inner, depth + 1)
            if found is not None:
                return found
    return None


def shape_key(element: Any) -> tuple[int, int] | None:
    """(id of the tree's root, shape id) for the shape element that contains ``element``."""
    node = element
    while node is not None and not any(str(node.tag).endswith(tag) for tag in _SHAPE_TAGS):
        node = node.getparent()
    if node is None:
        return None
    ids = node.xpath("./*[1]/*[local-name()='cNvPr']/@id")
    if not ids:
        return None
    # The slide part holds its root element, so the root's proxy (and its id) lives as long as the slide.
    return id(node.getroottree().getroot()), int(ids[0])


def blame(obj: Any, category: str) -> None:
    line = user_line()
    if line is None:
        return
    element = xml_of(obj)
    key = shape_key(element) if element is not None else None
    if key is not None:
        provenance[key][line].add(category)


def lines_of(shape: Any) -> dict[int, set[str]]:
    key = shape_key(shape._element)
    return provenance.get(key, {}) if key else {}


def _wrap_method(cls: type, name: str, category: str, *, blame_result: bool) -> None:
    original = getattr(cls, name, None)
    if original is None or getattr(original, "_vsdpo_traced", False):
        return

    @functools.wraps(original)
    def traced(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        blame(result if blame_result else self, category)
        return result

    traced._vsdpo_traced = True
    setattr(cls, name, traced)


def _wrap_setter(cls: type, name: str, category: str) -> None:
    prop = cls.__dict__.get(name)
    if not isinstance(prop, property) or prop.fset is None or getattr(prop.fset, "_vsdpo_traced", False):
        return
    original = prop.fset

    def traced(self, value):
        original(self, value)
        blame(self, category)

    traced._vsdpo_traced = True
    setattr(cls, name, property(prop.fget, traced, prop.fdel, prop.__doc__))


def _wrap_getter(cls: type, name: str, category: str) -> None:
    """A look-up that hands the user a shape (a placeholder, the title) marks that shape as theirs."""
    prop = cls.__dict__.get(name)
    if not isinstance(prop, property) or getattr(prop.fget, "_vsdpo_traced", False):
        return
    original = prop.fget

    def traced(self):
        result = original(self)
        if result is not None:
            blame(result, category)
        return result

    traced._vsdpo_traced = True
    setattr(cls, name, property(traced, prop.fset, prop.fdel, prop.__doc__))


def install() -> None:
    """Wrap python-pptx once per process (sandbox workers do it before forking)."""
    global _installed
    if _installed:
        return
    for name in (
        "add_textbox",
        "add_shape",
        "add_picture",
        "add_table",
        "add_chart",
        "add_connector",
        "add_group_shape",
        "add_movie",
        "add_ole_object",
    ):
        _wrap_method(_BaseGroupShapes, name, "create", blame_result=True)
    _wrap_method(SlidePlaceholders, "__getitem__", "create", blame_result=True)
    _wrap_getter(SlideShapes, "title", "create")
    for name in ("left", "top", "width", "height", "rotation"):
        _wrap_setter(BaseShape, name, "geometry")
    _wrap_setter(Shape, "text", "text")
    for name in (
        "text",
        "word_wrap",
        "auto_size",
        "vertical_anchor",
        "margin_left",
        "margin_right",
        "margin_top",
        "margin_bottom",
    ):
        _wrap_setter(TextFrame, name, "text")
    for name in ("add_paragraph", "fit_text", "clear"):
        _wrap_method(TextFrame, name, "text", blame_result=False)
    for name in ("text", "alignment", "level", "line_spacing", "space_before", "space_after"):
        _wrap_setter(_Paragraph, name, "text")
    _wrap_method(_Paragraph, "add_run", "text", blame_result=False)
    _wrap_method(_Paragraph, "add_line_break", "text", blame_result=False)
    _wrap_setter(_Run, "text", "text")
    for name in ("size", "bold", "italic", "name", "underline"):
        _wrap_setter(Font, name, "font")
    for name in ("rgb", "theme_color", "brightness"):
        _wrap_setter(ColorFormat, name, "color")
    for name in ("solid", "background", "patterned", "gradient"):
        _wrap_method(FillFormat, name, "fill", blame_result=False)
    _installed = True


def reset() -> None:
    provenance.clear()
