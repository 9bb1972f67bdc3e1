"""Web pages: an HTML document in headless Chromium, its visible elements and their visual defects.

- ``renderer``: ``render_web`` and the page's defect checks;
- ``browser``: the one headless Chromium per process, and loading a local page in it;
- ``launcher``: starts that Chromium offline, unprivileged and in its own sandbox;
- ``source``: start-tag and CSS declaration lines, carried into the page before it loads;
- ``settle.js``: brings the page's animations to rest before it is photographed and measured;
- ``extract.js``: the in-page extraction of the drawn elements.
"""

from __future__ import annotations

from vsdpo.render.web.renderer import find_web_defects, render_web

__all__ = ["find_web_defects", "render_web"]
