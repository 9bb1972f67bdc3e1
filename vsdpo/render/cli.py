"""`vsdpo render` and `vsdpo lint`: render a program, list its visual defects with their lines.

    vsdpo render chart.py -o chart.png
    vsdpo lint chart.py            # LINE: kind: message, per defect
    vsdpo lint page.html --json    # the RenderResult without the image
    vsdpo lint deck.py --annotate boxes.png

Exit codes: 0 no defects, 1 defects found, 2 the program failed to render.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_CLEAN, EXIT_DEFECTS, EXIT_FAILED = 0, 1, 2


def infer_kind(path: Path, code: str) -> str:
    """.html/.htm -> web; .py importing pptx -> slides; other .py -> chart."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm", ".xhtml"):
        return "web"
    if suffix == ".py" or not suffix:
        if "pptx" in code and ("from pptx" in code or "import pptx" in code):
            return "slides"
        if "matplotlib" in code or "pyplot" in code or suffix == ".py":
            return "chart"
    if code.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "web"
    raise ValueError(f"FILE: cannot tell the kind of {path} (expected .py or .html); pass --kind")


def _render(args: argparse.Namespace):
    from vsdpo.render import render

    code = args.file.read_text()
    kind = args.kind or infer_kind(args.file, code)
    return render(code, kind, timeout_s=args.timeout)


def _report_failure(result) -> int:
    where = f" (lines {', '.join(map(str, result.error_lines))})" if result.error_lines else ""
    print(f"error: {result.error}{where}", file=sys.stderr)
    return EXIT_FAILED


def run_render(args: argparse.Namespace) -> int:
    result = _render(args)
    if not result.ok:
        return _report_failure(result)
    out = args.output or args.file.with_suffix(".png")
    out.write_bytes(result.image or b"")
    print(
        f"{out}: {result.width}x{result.height}, {len(result.elements)} elements, {len(result.defects)} defects"
    )
    return EXIT_DEFECTS if result.defects else EXIT_CLEAN


def run_lint(args: argparse.Namespace) -> int:
    result = _render(args)
    if args.json:
        print(json.dumps(result.to_dict(with_image=False), indent=2))
    elif not result.ok:
        return _report_failure(result)
    else:
        for defect in sorted(result.defects, key=lambda d: (d.lines[:1] or [0], d.kind)):
            line = ",".join(map(str, defect.lines)) or "?"
            print(f"{line}: {defect.kind}: {defect.message}")
    if args.annotate and result.ok:
        from vsdpo.render.annotate import annotate

        args.annotate.write_bytes(annotate(result))
    if not result.ok:
        return EXIT_FAILED
    return EXIT_DEFECTS if result.defects else EXIT_CLEAN


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="program to render: .py (chart, slides) or .html"
    )
    parser.add_argument("--kind", choices=("chart", "web", "slides"), default=None, help="default: from FILE")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before the program is killed")


def add_parser(subparsers) -> None:
    render = subparsers.add_parser("render", help="render a chart, web page or slide program to PNG")
    _common(render)
    render.add_argument("-o", "--output", type=Path, default=None, help="PNG path (default: FILE with .png)")
    render.set_defaults(func=run_render)

    lint = subparsers.add_parser("lint", help="list the visual defects of a program with their source lines")
    _common(lint)
    lint.add_argument(
        "--json", action="store_true", help="print the RenderResult (without the image) as JSON"
    )
    lint.add_argument("--annotate", type=Path, default=None, help="write the render with defect boxes here")
    lint.set_defaults(func=run_lint)
