"""`vsdpo render` and `vsdpo lint`: render a program, list its visual defects with their lines.

    vsdpo render chart.py -o chart.png
    vsdpo lint chart.py            # LINE: kind: message, per defect
    vsdpo lint page.html --json    # the RenderResult without the image
    vsdpo lint deck.py --annotate boxes.png

Exit codes: 0 no defects, 1 defects found, 2 the program failed to render or the command was
misused (a missing, unreadable, binary or oversized FILE, a bad --timeout, an output path that cannot
be written); each of those prints one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Light by design (the renderers load on first use): `vsdpo --help` imports this module.
from vsdpo.render import render

EXIT_CLEAN, EXIT_DEFECTS, EXIT_FAILED = 0, 1, 2
# FILE is read up to this many bytes; a longer one is refused (as render() would).
MAX_INPUT_BYTES = 2_000_000
MAX_TIMEOUT_S = 3600.0


class UsageError(Exception):
    """A mistake in the command line or its files, told in one line."""


def read_program(path: Path) -> str:
    """FILE's text: a regular file of UTF-8 text (no NUL bytes), read up to MAX_INPUT_BYTES."""
    try:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory, expected a program file")
        if not path.is_file():  # a device or a pipe could be endless, or never end
            raise UsageError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        with open(path, "rb") as source:
            data = source.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    if b"\0" in data:
        raise UsageError(f"{path}: binary data, expected program text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text (byte {error.start})") from None


def _checked_timeout(value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise UsageError(f"--timeout: expected seconds in (0, {MAX_TIMEOUT_S:g}], got {value:g}")
    return value


def _writable(path: Path | None, option: str) -> None:
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, expected a file path")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {path.parent} does not exist")


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot write it ({error.strerror or error})") from None


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


def _render(args: argparse.Namespace, output: Path | None, option: str):
    """Check the command line and FILE, then the output path, then render."""
    timeout_s = _checked_timeout(args.timeout)
    code = read_program(args.file)
    try:
        kind = args.kind or infer_kind(args.file, code)
    except ValueError as error:
        raise UsageError(str(error)) from None
    _writable(output, option)
    return render(code, kind, timeout_s=timeout_s)


def _usage_errors(command):
    """Turn a UsageError into its one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _report_failure(result) -> int:
    where = f" (lines {', '.join(map(str, result.error_lines))})" if result.error_lines else ""
    print(f"error: {result.error}{where}", file=sys.stderr)
    return EXIT_FAILED


@_usage_errors
def run_render(args: argparse.Namespace) -> int:
    out = args.output or args.file.with_suffix(".png")
    result = _render(args, out, "-o")
    if not result.ok:
        return _report_failure(result)
    _write(out, result.image or b"", "-o")
    print(
        f"{out}: {result.width}x{result.height}, {len(result.elements)} elements, {len(result.defects)} defects"
    )
    return EXIT_DEFECTS if result.defects else EXIT_CLEAN


@_usage_errors
def run_lint(args: argparse.Namespace) -> int:
    result = _render(args, args.annotate, "--annotate")
    if args.json:
        print(json.dumps(result.to_dict(with_image=False), indent=2))
    elif not result.ok:
        return _report_failure(result)
    else:
        for defect in sorted(result.defects, key=lambda d: (d.lines[:1] or [0], d.kind)):
            line = ",".join(map(str, defect.lines)) or "?"
            print(f"{line}: {defect.kind}: {defect.message}")
    if args.annotate and result.ok:
        # PIL only when a picture is asked for: `vsdpo --help` imports this module.
        from vsdpo.render.annotate import annotate

        _write(args.annotate, annotate(result), "--annotate")
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
