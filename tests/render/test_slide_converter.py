"""The persistent deck converter (vsdpo.render.slides.converter): the same pictures as a LibreOffice
started for each deck, every sandbox layer, and nothing of one deck left for the next."""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vsdpo
from tests.render.test_hostile_deck_links import _deck as linking_deck
from tests.render.test_slides_deadline import HEAVY_DECK
from vsdpo.render.sandbox import memory
from vsdpo.render.sandbox.child import LAYERS
from vsdpo.render.sandbox.worker import JOB_UID_BASE
from vsdpo.render.slides import converter, picture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("soffice") is None, reason="needs LibreOffice (soffice)"),
]
SIZE = (960, 720)


@pytest.fixture
def fresh(monkeypatch):
    """Converters of this test only: none left from another test, none left for the next."""
    converter.close_all()
    monkeypatch.setattr(converter, "_converters", converter._Converters())
    monkeypatch.setenv(converter.MODE_ENV, "persistent")
    yield converter
    converter.close_all()


def _deck(seed: int, token: str = "", slides: int = 2) -> bytes:
    """A deck of random titles, bullets, boxes and colours."""
    from pptx import Presentation
    from pptx.dml.color import RGBColor
    from pptx.util import Inches, Pt

    rng = random.Random(seed)
    prs = Presentation()
    for number in range(slides):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = f"{token} slide {number} {rng.randrange(10**6)}"
        body = slide.placeholders[1].text_frame
        body.text = " ".join(
            rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randrange(3, 9))
        )
        for _ in range(rng.randrange(1, 4)):
            body.add_paragraph().text = f"point {rng.random():.4f}"
        box = slide.shapes.add_shape(
            1, Inches(rng.uniform(0, 6)), Inches(rng.uniform(4, 6)), Inches(rng.uniform(1, 3)), Inches(1)
        )
        box.fill.solid()
        box.fill.fore_color.rgb = RGBColor(*(rng.randrange(256) for _ in range(3)))
        box.text_frame.text = f"box {rng.randrange(1000)}"
        box.text_frame.paragraphs[0].runs[0].font.size = Pt(rng.randrange(10, 30))
    out = io.BytesIO()
    prs.save(out)
    return out.getvalue()


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _drawn(deck: bytes, count: int = 2, timeout_s: float = 60) -> picture.Drawing:
    return picture.draw_deck_within(deck, SIZE, count, timeout_s)


def _converter_root(process_pid: int) -> Path:
    """The converter's filesystem as its PID namespace's first process sees it."""
    children = Path(f"/proc/{process_pid}/task/{process_pid}/children").read_text().split()
    assert len(children) == 1, children
    return Path(f"/proc/{children[0]}/root")


def _only_idle(module) -> converter.DeckConverter:
    assert len(module._converters.idle) == 1
    return module._converters.idle[0]


def test_a_persistent_converter_draws_what_a_libreoffice_per_deck_draws(fresh, monkeypatch):
    seeds = [random.randrange(10**6) for _ in range(3)]
    persistent = [_drawn(_deck(seed)) for seed in seeds]
    monkeypatch.setenv(converter.MODE_ENV, "job")
    per_job = [_drawn(_deck(seed)) for seed in seeds]
    for kept, alone in zip(persistent, per_job, strict=True):
        assert kept.png is not None and alone.png is not None, (kept.error, alone.error)
        assert _pixels(kept.png).shape == (2 * SIZE[1], SIZE[0], 3)
        np.testing.assert_array_equal(_pixels(kept.png), _pixels(alone.png))
    assert fresh.converters_started() == 1  # three decks, one LibreOffice


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's layers need root")
def test_the_converter_runs_with_every_layer_of_a_sandbox_job_and_sees_no_task_data(fresh):
    assert _drawn(_deck(1)).png is not None
    kept = _only_idle(fresh)
    assert set(LAYERS) <= set(kept.layers), kept.layers
    root = _converter_root(kept.pid)
    init = (root / "proc/1/status").read_text()  # its own /proc: the namespace's first process is 1
    uid = next(line.split()[1] for line in init.splitlines() if line.startswith("Uid:"))
    assert int(uid) == kept.uid and kept.uid >= JOB_UID_BASE
    # The package's code is shown; the tests beside it, and anything else of the checkout, are not.
    assert (root / Path(vsdpo.__file__).relative_to("/")).exists()
    assert not (root / Path(__file__).relative_to("/")).exists()
    data = Path(vsdpo.__file__).resolve().parents[2] / "shared" / "data"
    if data.exists():
        assert not (root / data.relative_to("/")).exists()


def test_nothing_of_a_deck_is_left_in_the_converter_for_the_next(fresh):
    token = f"T{random.randrange(16**8):08x}"
    assert _drawn(_deck(2, token=token)).png is not None
    root = _converter_root(_only_idle(fresh).pid)
    workspace = root / converter.WORKSPACE.lstrip("/")
    assert sorted(p.name for p in workspace.iterdir()) == ["home", "profile"]
    for path in (root / "tmp").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and b"deck-0" not in data, path


def test_a_hostile_deck_cannot_reach_the_next_deck(fresh):
    """Deck A links every way it can to where deck B will be written and to what A's drawing left;
    B, drawn after A by the same converter, is drawn as a fresh converter draws it."""
    victim = _deck(random.randrange(10**6), token="victim")
    targets = [
        f"{converter.WORKSPACE}/deck-1/deck.pptx",
        f"{converter.WORKSPACE}/deck-0/slide-1.png",
        "../deck-1/deck.pptx",
        "../deck-0/slide-1.png",
        f"file://{converter.WORKSPACE}/deck-1/deck.pdf",
    ]
    hostile = linking_deck([("External", target) for target in targets])
    first = _drawn(hostile, count=1)
    assert first.png is not None, first.error
    after = _drawn(victim)
    assert fresh.converters_started() == 1
    converter.close_all()
    fresh._converters = converter._Converters()
    alone = _drawn(victim)
    assert after.png is not None and alone.png is not None
    np.testing.assert_array_equal(_pixels(after.png), _pixels(alone.png))


def test_a_deck_past_its_deadline_kills_its_converter_and_the_next_deck_gets_a_fresh_one(fresh):
    heavy = _heavy_deck()
    timed_out = _drawn(heavy, count=1, timeout_s=0.5)
    assert timed_out.png is None and timed_out.error_kind == "timeout", (
        timed_out.error_kind,
        timed_out.error,
    )
    assert fresh._converters.idle == []  # killed, not kept
    victim = _deck(random.randrange(10**6))
    after = _drawn(victim)
    assert after.png is not None and fresh.converters_started() == 2


def _heavy_deck() -> bytes:
    """The deadline test's deck: LibreOffice lays it out for about a minute."""
    namespace: dict = {}
    exec(HEAVY_DECK, namespace)
    out = io.BytesIO()
    namespace["prs"].save(out)
    return out.getvalue()


def test_bytes_that_are_not_a_deck_fail_alone(fresh):
    for junk in (b"not a zip at all", _deck(3)[:2000], b"PK\x03\x04" + os.urandom(4000)):
        drawing = _drawn(junk)
        assert drawing.png is None and drawing.error, drawing
    assert _drawn(_deck(4)).png is not None
    assert fresh.converters_started() == 1  # a bad deck is not a fault of the converter


def test_a_converter_that_dies_is_replaced(fresh):
    assert _drawn(_deck(5)).png is not None
    kept = _only_idle(fresh)
    os.killpg(kept.pid, 9)
    kept.process.wait(10)
    assert _drawn(_deck(6)).png is not None
    assert fresh.converters_started() == 2


def test_without_python_uno_decks_are_drawn_one_libreoffice_each_and_a_warning_says_so(fresh, monkeypatch):
    monkeypatch.setattr(converter, "_warned", set())
    monkeypatch.setattr(converter.DeckConverter, "start", _refusing_start)
    with pytest.warns(RuntimeWarning, match="one LibreOffice per deck"):
        drawing = _drawn(_deck(7))
    assert drawing.png is not None
    assert fresh.converters_started() == 0


def _refusing_start(self) -> None:
    raise converter.ConverterUnavailable("python3-uno is not installed (as this test pretends)")


def test_a_wrong_mode_names_the_setting(monkeypatch):
    monkeypatch.setenv(converter.MODE_ENV, "forever")
    with pytest.raises(ValueError, match="VSDPO_SLIDE_CONVERTER.*persistent, job.*'forever'"):
        converter.mode()


def test_a_reply_out_of_bounds_kills_the_converter(fresh):
    """A converter that answers with more than a picture may hold is killed, not believed."""
    script = (
        "import os, struct, json, sys\n"
        "h = json.dumps({'ready': True, 'layers': []}).encode()\n"
        "os.write(1, struct.pack('<II', len(h), 0) + h)\n"
        "sys.stdin.buffer.read(8)\n"
        "os.write(1, struct.pack('<II', 10, 1 << 30))\n"
        "import time; time.sleep(30)\n"
    )
    fake = converter.DeckConverter()
    fake.process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.set_blocking(fake.process.stdout.fileno(), False)
    ready, _ = fake._receive(time.monotonic() + 30, max_body=0)
    assert ready["ready"]
    with pytest.raises(converter.ConverterFault) as fault:
        fake.draw(b"deck", SIZE, 1, 10)
    assert fault.value.kind == "invalid_reply"
    assert not fake.alive


def _cgroup_folder(pid: int) -> Path:
    place = memory.controller()
    return Path(place.path, memory.name_of(os.getpid(), pid))


def _limit_file(folder: Path) -> Path:
    return folder / ("memory.limit_in_bytes" if memory.controller().version == 1 else "memory.max")


@pytest.mark.skipif(
    memory.controller() is None, reason="needs a memory cgroup to write (root, cgroup v1 or v2)"
)
def test_a_converter_is_bounded_by_a_memory_cgroup_of_its_own_and_a_deck_past_it_fails_as_memory(fresh):
    assert _drawn(_deck(8)).png is not None
    kept = _only_idle(fresh)
    assert "memory_cgroup" in kept.layers, kept.layers
    folder = _cgroup_folder(kept.pid)
    assert int(_limit_file(folder).read_text()) == converter.CGROUP_BYTES
    members = {int(pid) for pid in (folder / "cgroup.procs").read_text().split()}
    commands = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in members}
    assert kept.pid in members and any(name.startswith("soffice") for name in commands), commands
    # The bound binds: lowered to a little above what it holds now, a heavy deck passes it.
    used = int(
        (
            folder / ("memory.usage_in_bytes" if memory.controller().version == 1 else "memory.current")
        ).read_text()
    )
    if memory.controller().version == 1:
        (folder / "memory.limit_in_bytes").write_text(str(used + (16 << 20)))
        with contextlib.suppress(OSError):
            (folder / "memory.memsw.limit_in_bytes").write_text(str(used + (16 << 20)))
    else:
        (folder / "memory.max").write_text(str(used + (16 << 20)))
    heavy = _drawn(_heavy_deck(), count=1, timeout_s=120)
    assert heavy.png is None and heavy.error_kind == "memory", (heavy.error_kind, heavy.error)
    assert "memory" in heavy.error
    assert fresh._converters.idle == [] and not folder.exists()  # killed, and its cgroup removed
    assert _drawn(_deck(9)).png is not None and fresh.converters_started() == 2
    again = _cgroup_folder(_only_idle(fresh).pid)
    assert again.exists()
    converter.close_all()
    assert not again.exists()


def test_a_converter_that_failed_to_start_is_tried_again_later(fresh, monkeypatch):
    monkeypatch.setattr(converter, "_warned", set())
    real_start = converter.DeckConverter.start
    monkeypatch.setattr(converter.DeckConverter, "start", _refusing_start)
    with pytest.warns(RuntimeWarning, match="one LibreOffice per deck"):
        assert _drawn(_deck(10)).png is not None
    monkeypatch.setattr(converter.DeckConverter, "start", real_start)
    assert _drawn(_deck(11)).png is not None
    assert fresh.converters_started() == 0  # within RETRY_AFTER_S, the per-job path
    monkeypatch.setattr(fresh._converters, "retry_at", time.monotonic() - 1)
    assert _drawn(_deck(12)).png is not None
    assert fresh.converters_started() == 1 and fresh._converters.unavailable is None
