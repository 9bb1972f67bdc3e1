"""Task sources: built-in chart tasks and task files.

A task file is JSON Lines, one task per line::

    {"prompt": "Recreate this chart in matplotlib.", "image": "images/0001.png", "reference": "import ..."}

Keys:

- ``prompt`` (required): the instruction text.
- ``kind`` (optional): ``chart`` | ``web`` | ``slides``; defaults to the kind given to the loader.
- ``image`` (optional): path of a target image (PNG/JPEG), relative to the file's folder or absolute.
- ``reference`` (optional): the reference program (chart, slides) or HTML page (web), inline.
- ``reference_path`` (optional): the same, read from a file relative to the task file.
- ``id`` (optional): a name for logs; defaults to ``<file stem>-<line number>``.

When a task has a reference but no image, the trainer renders the reference once to get the target
image shown with the prompt.

A folder works too (``tasks: dir:PATH``): every ``*.py`` file is a chart task (or a slides task
when it imports ``pptx``) with the file as its reference, every ``*.html`` a web task with the
page as its reference and the ``.png`` of the same name, when present, as its image. The prompt is
:data:`FOLDER_PROMPTS` of the kind: the ChartMimic and Design2Code "direct mimic" set-up.

A relative folder or task file resolves against the data root: the environment variable
``VSDPO_DATA_ROOT``, or the current working directory where it is unset (``data_root``). The packaged
configs name their data relative to it (``dir:chartmimic``), since they live inside the installed
package, far from any data; ``VSDPO_DATA_ROOT=/data vsdpo train --config qwen3vl_8b_chart`` reads
``/data/chartmimic``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vsdpo.tasks.charts import builtin_chart_tasks
from vsdpo.tasks.types import Task

__all__ = [
    "Task",
    "builtin_chart_tasks",
    "data_root",
    "load_task_file",
    "load_task_folder",
    "load_tasks",
    "resolve_task_path",
]

FOLDER_PROMPTS = {
    "chart": "Write a matplotlib program that draws exactly this chart.",
    "web": "Write a single HTML page, with inline CSS, that looks exactly like this screenshot.",
    "slides": "Write a python-pptx program that builds exactly this slide.",
}
TASK_KEYS = {"prompt", "kind", "image", "reference", "reference_path", "id"}
KINDS = ("chart", "web", "slides")
DATA_ROOT_VARIABLE = "VSDPO_DATA_ROOT"


def data_root() -> Path:
    """The folder relative task paths resolve against: ``$VSDPO_DATA_ROOT``, else the current folder."""
    return Path(os.environ.get(DATA_ROOT_VARIABLE) or os.getcwd()).expanduser()


def resolve_task_path(path: str | Path) -> Path:
    """``path`` as a task source reads it: absolute (or ``~``) as it is, relative under ``data_root()``."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else data_root() / path


def _missing(source: str, resolved: Path, what: str) -> str:
    """Where a task source was looked for, and how to point it elsewhere."""
    root = os.environ.get(DATA_ROOT_VARIABLE)
    where = f"{DATA_ROOT_VARIABLE}={root}" if root else f"{DATA_ROOT_VARIABLE} unset: the current folder"
    return (
        f"{source!r}: no {what} {resolved} (a relative path resolves against the data root, {where}; "
        f"set {DATA_ROOT_VARIABLE} to the folder that holds your data, or give an absolute path)"
    )


def load_task_file(path: str | Path, kind: str = "chart") -> list[Task]:
    """Read a JSONL task file; errors name the file, the line and the key."""
    path = Path(path)
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        unknown = set(record) - TASK_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(TASK_KEYS)}"
            )
        if not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise ValueError(
                f"{where}: key 'prompt' must be a non-empty string, got {record.get('prompt')!r}"
            )
        task_kind = record.get("kind", kind)
        if task_kind not in KINDS:
            raise ValueError(f"{where}: key 'kind' must be one of {KINDS}, got {task_kind!r}")
        reference = record.get("reference")
        if record.get("reference_path"):
            reference = (path.parent / record["reference_path"]).read_text(encoding="utf-8")
        image_path = None
        if record.get("image"):
            image_path = str((path.parent / record["image"]).resolve())
            if not Path(image_path).is_file():
                raise ValueError(f"{where}: key 'image' names a missing file {image_path}")
        tasks.append(
            Task(
                id=str(record.get("id", f"{path.stem}-{number}")),
                kind=task_kind,
                prompt=record["prompt"],
                reference=reference,
                image_path=image_path,
                image=Path(image_path).read_bytes() if image_path else None,
            )
        )
    if not tasks:
        raise ValueError(f"{path}: no tasks found")
    return tasks


def load_task_folder(folder: str | Path) -> list[Task]:
    """Tasks from a folder of reference programs and pages (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"tasks: expected a folder after 'dir:', got {str(folder)!r}")
    tasks = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".py":
            source = path.read_text(encoding="utf-8")
            kind = "slides" if "pptx" in source else "chart"
            tasks.append(Task(id=path.stem, kind=kind, prompt=FOLDER_PROMPTS[kind], reference=source))
        elif path.suffix == ".html":
            image = path.with_suffix(".png")
            tasks.append(
                Task(
                    id=path.stem,
                    kind="web",
                    prompt=FOLDER_PROMPTS["web"],
                    reference=path.read_text(encoding="utf-8"),
                    image_path=str(image) if image.exists() else None,
                    image=image.read_bytes() if image.exists() else None,
                )
            )
    if not tasks:
        raise ValueError(f"tasks: no .py or .html files in {folder}")
    return tasks


def load_tasks(
    source: str, kind: str = "chart", count: int = 64, seed: int = 0, split: str = "train"
) -> list[Task]:
    """``builtin:charts`` (the built-in generator; ``split`` picks its training or held-out part),
    ``dir:PATH`` (a folder), or a JSONL task file; a relative path resolves against ``data_root()``.
    A missing folder or file is a ``FileNotFoundError`` that says where it was looked for."""
    if source == "builtin:charts":
        return builtin_chart_tasks(count, seed=seed, split=split)
    if source.startswith("dir:"):
        if not source[4:]:
            raise ValueError(f"expected a folder after 'dir:', got {source!r}")
        folder = resolve_task_path(source[4:])
        if not folder.is_dir():
            raise FileNotFoundError(_missing(source, folder, "folder"))
        return [task for task in load_task_folder(folder) if task.kind == kind]
    path = resolve_task_path(source)
    if not path.is_file():
        raise FileNotFoundError(_missing(source, path, "task file"))
    return load_task_file(path, kind=kind)
