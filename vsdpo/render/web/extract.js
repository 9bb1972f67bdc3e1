// In-page extraction of the drawn elements of an HTML render, evaluated by vsdpo/render/web/renderer.py.
// Returns plain data: the visible elements (document order) with their boxes, text, colours, font,
// scroll metrics and the stylesheet rules that declared the layout and colour properties on them.
(args) => {
  const LINE_ATTR = args.lineAttr;
  const TRACKED = args.trackedProperties;
  const MAX_ELEMENTS = args.maxElements;
  const SKIP_TAGS = new Set(["HTML", "HEAD", "SCRIPT", "STYLE", "META", "LINK", "TITLE", "NOSCRIPT", "TEMPLATE", "BR", "WBR"]);
  const IMAGE_TAGS = new Set(["IMG", "SVG", "CANVAS", "VIDEO", "PICTURE", "IFRAME", "OBJECT", "EMBED"]);
  const CONTROL_TAGS = new Set(["INPUT", "BUTTON", "SELECT", "TEXTAREA"]);

  const parseColor = (text) => {
    const m = /rgba?\(([^)]+)\)/.exec(text || "");
    if (!m) return null;
    const parts = m[1].split(/[ ,\/]+/).filter((p) => p.length).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const hex = (c) => "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");

  const luminance = (c) => {
    const lin = c.slice(0, 3).map((v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (hi + 0.05) / (lo + 0.05);
  };
  // The root's background paints the whole canvas, body's when the root has none.
  const canvasColor = (() => {
    for (const el of [document.documentElement, document.body]) {
      const c = el && parseColor(getComputedStyle(el).backgroundColor);
      if (c && c[3] > 0) return over(c, [255, 255, 255, 1]);
    }
    return [255, 255, 255, 1];
  })();
  // Composite painted layers (topmost first) down to the first opaque one, over the canvas colour.
  const composite = (layers) => {
    let color = canvasColor;
    let image = false;
    let source = null;
    const painted = [];
    for (const el of layers) {
      const cs = getComputedStyle(el);
      if (cs.backgroundImage && cs.backgroundImage !== "none") {
        image = true;
        source = source || el;
        break;
      }
      const c = parseColor(cs.backgroundColor);
      if (!c || c[3] <= 0) continue;
      painted.push(c);
      source = source || el;
      if (c[3] >= 1) break;
    }
    for (const c of painted.reverse()) color = over(c, color);
    return { color, image, source };
  };
  const ancestorsOf = (el) => {
    const chain = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) chain.push(e);
    return chain;
  };
  // What is painted behind `el` at page point (x, y): the hit-test stack below it, so that positioned
  // siblings behind the text count, not only its ancestors.
  const paintedBehind = (el, x, y) => {
    if (y - scrollY < 0 || y - scrollY >= innerHeight || x - scrollX < 0 || x - scrollX >= innerWidth) {
      window.scrollTo(Math.max(0, x - innerWidth / 2), Math.max(0, y - innerHeight / 2));
    }
    const stack = document.elementsFromPoint(x - scrollX, y - scrollY);
    const at = stack.findIndex((e) => e === el || e.contains(el));
    return composite(at >= 0 ? stack.slice(at) : ancestorsOf(el));
  };
  const effectiveBackground = (el, rects, fg) => {
    if (!rects || !rects.length) return composite(ancestorsOf(el));
    const [x0, y0, x1, y1] = rects[0];
    let worst = null;
    for (const f of [0.25, 0.5, 0.75]) {
      const bg = paintedBehind(el, x0 + f * (x1 - x0), (y0 + y1) / 2);
      bg.ratio = contrast(fg[3] < 1 ? over(fg, bg.color) : fg, bg.color);
      if (!worst || bg.ratio < worst.ratio) worst = bg;
    }
    return worst;
  };

  // Rules of same-document stylesheets, flattened in order (inside @media/@supports too).
  const rules = [];
  const sheets = [];
  const matched = [];
  for (const [sheetIndex, sheet] of Array.from(document.styleSheets).entries()) {
    const owner = sheet.ownerNode;
    sheets.push({ line: owner && owner.getAttribute ? Number(owner.getAttribute(LINE_ATTR)) || null : null });
    let ruleIndex = 0;
    const walk = (list) => {
      for (const rule of Array.from(list)) {
        if (rule.selectorText !== undefined && rule.style) {
          const declared = TRACKED.filter((p) => rule.style.getPropertyValue(p) !== "");
          const ref = rules.length;
          rules.push({ sheet: sheetIndex, index: ruleIndex, selector: rule.selectorText });
          if (declared.length) matched.push({ rule, ref, declared });
          ruleIndex += 1;
        } else if (rule.cssRules) {
          const applies = !rule.media || window.matchMedia(rule.media.mediaText).matches;
          if (applies) walk(rule.cssRules);
          else ruleIndex += countStyleRules(rule.cssRules);
        }
      }
    };
    const countStyleRules = (list) => Array.from(list).reduce(
      (n, r) => n + (r.selectorText !== undefined ? 1 : r.cssRules ? countStyleRules(r.cssRules) : 0), 0);
    try { walk(sheet.cssRules); } catch (e) { /* cross-origin sheet: unreadable */ }
  }

  const declaredOn = (el) => {
    const css = {};
    for (const { rule, ref, declared } of matched) {
      let hit = false;
      try { hit = el.matches(rule.selectorText); } catch (e) { hit = false; }
      if (!hit) continue;
      for (const p of declared) (css[p] = css[p] || []).push(ref);
    }
    for (const p of TRACKED) if (el.style && el.style.getPropertyValue(p) !== "") (css[p] = css[p] || []).push(-1);
    return css;
  };

  const rectOf = (r) => [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY];
  const directTextBox = (el) => {
    let text = "";
    let box = null;
    const rects = [];
    for (const node of el.childNodes) {
      if (node.nodeType !== 3 || !node.textContent.trim()) continue;
      text += node.textContent;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) {
        if (r.width <= 0 || r.height <= 0) continue;
        const b = rectOf(r);
        rects.push(b);
        box = box ? [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]), Math.max(box[3], b[3])] : b;
      }
    }
    return { text: text.replace(/\s+/g, " ").trim(), box, rects: rects.slice(0, 50) };
  };

  const index = new Map();
  const elements = [];
  for (const el of document.querySelectorAll("body, body *")) {
    if (elements.length >= MAX_ELEMENTS) break;
    if (SKIP_TAGS.has(el.tagName.toUpperCase())) continue;
    if (el.closest("svg") && el.tagName.toLowerCase() !== "svg") continue;
    if (el.checkVisibility && !el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    const r = el.getBoundingClientRect();
    if (r.width <= 0 && r.height <= 0) continue;
    // In page coordinates now: reading the background below may scroll the window.
    const box = rectOf(r);
    const cs = getComputedStyle(el);
    const tag = el.tagName.toUpperCase();
    const { text, box: textBox, rects: textRects } = directTextBox(el);
    let role = "block";
    if (IMAGE_TAGS.has(tag)) role = "image";
    else if (CONTROL_TAGS.has(tag)) role = "control";
    else if (text && textBox) role = "text";
    const fg = parseColor(cs.color) || [0, 0, 0, 1];
    const bg = effectiveBackground(el, role === "text" ? textRects : null, fg);
    let parent = el.parentElement;
    while (parent && !index.has(parent)) parent = parent.parentElement;
    index.set(el, elements.length);
    elements.push({
      tag: tag.toLowerCase(),
      line: Number(el.getAttribute(LINE_ATTR)) || null,
      role,
      box,
      text_box: role === "text" ? textBox : null,
      text_rects: role === "text" ? textRects : null,
      text: role === "text" || role === "control" ? text || (el.value || "").toString().slice(0, 200) || null : null,
      color: hex(fg[3] < 1 ? over(fg, bg.color) : fg),
      background: hex(bg.color),
      background_image: bg.image,
      bg_from: bg.source && index.has(bg.source) ? index.get(bg.source) : null,
      font_px: parseFloat(cs.fontSize) || null,
      bold: (parseInt(cs.fontWeight, 10) || 400) >= 700,
      parent: parent ? index.get(parent) : null,
      overflow: [cs.overflowX, cs.overflowY],
      position: cs.position,
      display: cs.display,
      float: cs.cssFloat,
      scroll: [el.scrollWidth, el.scrollHeight, el.clientWidth, el.clientHeight],
      css: declaredOn(el),
    });
  }
  window.scrollTo(0, 0);
  const doc = document.documentElement;
  return {
    elements,
    rules,
    sheets,
    page: [Math.max(doc.scrollWidth, document.body ? document.body.scrollWidth : 0), Math.max(doc.scrollHeight, document.body ? document.body.scrollHeight : 0)],
  };
}
