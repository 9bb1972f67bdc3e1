"""Source provenance for HTML: start-tag lines carried into the DOM, and the lines of CSS declarations.

Before a page is loaded every start tag gets a ``data-vsdpo-line`` attribute holding its 1-based
line, so the line survives whatever the browser's tree builder does (implied ``<tbody>``, elements
moved out of tables). The stylesheets of ``<style>`` elements are split here into rules in the order
the CSSOM lists them, each with the line of every declaration, so an offending computed property can
be blamed on the declaration that set it.

The source is untrusted and runs through here in the caller: the work is linear in its length and
checks the render's deadline as it goes (vsdpo.render.deadline).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from vsdpo.render.deadline import check_deadline

LINE_ATTR = "data-vsdpo-line"
# Elements whose content the HTML tokenizer reads as raw text: no tags inside them.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})
# The tagger reads the page this many characters at a time, checking the deadline in between.
FEED_CHARS = 1 << 16
# At-rules whose block holds style rules that the CSSOM lists (as grouping rules).
_GROUPING_AT_RULES = frozenset({"media", "supports", "layer", "container", "document", "scope"})


@dataclass
class CssRule:
    selector: str
    line: int  # line of the selector
    declarations: dict[str, int] = field(default_factory=dict)  # property -> line of its last declaration


@dataclass
class TaggedHtml:
    html: str  # the page with LINE_ATTR on every start tag
    style_rules: dict[int, list[CssRule]]  # <style> start-tag line -> its rules in CSSOM order


class _LineTagger(HTMLParser):
    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.insertions: list[tuple[int, str]] = []  # (offset, text) to insert
        self.style_blocks: list[tuple[int, int]] = []  # (<style> line, offset where its text starts)
        self._raw: str | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        self._tag(tag, attrs)
        if tag in _RAW_TEXT:
            self._raw = tag
            if tag == "style":
                start = self._offset() + len(self.get_starttag_text() or "")
                self.style_blocks.append((self.getpos()[0], start))

    def handle_startendtag(self, tag, attrs):
        self._tag(tag, attrs)

    def handle_endtag(self, tag):
        if tag == self._raw:
            self._raw = None

    def _tag(self, tag: str, attrs) -> None:
        text = self.get_starttag_text() or ""
        if self._raw is not None or any(name == LINE_ATTR for name, _ in attrs) or not text.startswith("<"):
            return
        # Insert right after "<name" so attributes, quoting and self-closing slashes stay as written.
        self.insertions.append((self._offset() + 1 + len(tag), f' {LINE_ATTR}="{self.getpos()[0]}"'))


def tag_source_lines(source: str) -> TaggedHtml:
    """Return ``source`` with every start tag carrying its line, and the CSS rules of its <style> blocks."""
    tagger = _LineTagger(source)
    for start in range(0, len(source), FEED_CHARS):
        check_deadline()
        tagger.feed(source[start : start + FEED_CHARS])
    tagger.close()
    pieces, last = [], 0
    for offset, text in sorted(tagger.insertions):
        pieces += [source[last:offset], text]
        last = offset
    pieces.append(source[last:])
    style_rules = {}
    lowered = source.lower() if tagger.style_blocks else ""
    for line, start in tagger.style_blocks:
        end = lowered.find("</style", start)
        end = len(source) if end < 0 else end
        first_line = bisect.bisect_right(tagger.line_starts, start)
        style_rules[line] = parse_css_rules(source[start:end], first_line=first_line)
    return TaggedHtml(html="".join(pieces), style_rules=style_rules)


_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def parse_css_rules(css: str, *, first_line: int = 1) -> list[CssRule]:
    """Style rules of a stylesheet in CSSOM order (grouping at-rules flattened, others skipped)."""
    # Blank comments out character for character so offsets and lines stay true.
    css = _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), css)
    newlines = [m.start() for m in re.finditer("\n", css)]
    line_of = lambda offset: first_line + bisect.bisect_left(newlines, offset)
    rules: list[CssRule] = []
    _parse_block(css, 0, len(css), line_of, rules)
    return rules


def _parse_block(css: str, start: int, end: int, line_of, rules: list[CssRule]) -> None:
    position = start
    while position < end:
        check_deadline()
        brace = _find_outside_strings(css, "{", position, end)
        if brace < 0:
            return
        semicolon = _find_outside_strings(css, ";", position, brace)
        prelude = css[position:brace].strip()
        if prelude.startswith("@") and 0 <= semicolon < brace:
            position = semicolon + 1  # a statement at-rule: @import, @charset
            continue
        close = _matching_brace(css, brace, end)
        if prelude.startswith("@"):
            name = re.match(r"@([-\w]+)", prelude)
            if name and name.group(1).lower() in _GROUPING_AT_RULES:
                _parse_block(css, brace + 1, close, line_of, rules)
        elif prelude:
            selector_offset = position + (len(css[position:brace]) - len(css[position:brace].lstrip()))
            rule = CssRule(selector=" ".join(prelude.split()), line=line_of(selector_offset))
            for match in re.finditer(r"([-\w]+)\s*:", css[brace + 1 : close]):
                at = brace + 1 + match.start()
                before = at - 1
                while before > brace and css[before].isspace():
                    before -= 1
                if before > brace and css[before] not in ";{":
                    continue  # a colon inside a value (url(a:b)), not a property name
                rule.declarations[match.group(1).lower()] = line_of(at)
            rules.append(rule)
        position = close + 1


def _find_outside_strings(css: str, char: str, start: int, end: int) -> int:
    quote = None
    for i in range(start, end):
        c = css[i]
        if quote:
            if c == quote and css[i - 1] != "\\":
                quote = None
        elif c in "\"'":
            quote = c
        elif c == char:
            return i
    return -1


def _matching_brace(css: str, open_at: int, end: int) -> int:
    depth = 0
    for i in range(open_at, end):
        if css[i] == "{":
            depth += 1
        elif css[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return end


def declaration_line(rule: CssRule, prop: str) -> int:
    """Line of the declaration that set the (longhand) computed property ``prop`` in ``rule``.

    The CSSOM expands shorthands (``margin`` -> ``margin-left``), so a longhand is found under its
    own name or the nearest shorthand it extends; else the selector's line.
    """
    name = prop
    while name:
        if name in rule.declarations:
            return rule.declarations[name]
        name = name.rpartition("-")[0]
    return rule.line


def normalise_selector(selector: str) -> str:
    return re.sub(r"\s*([>+~,])\s*", r"\1", " ".join(selector.replace('"', "'").split())).lower()
