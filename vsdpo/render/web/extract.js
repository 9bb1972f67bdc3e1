// In-page extraction of the drawn elements of an HTML render, evaluated by vsdpo/render/web/renderer.py
// in an isolated world, after the page was frozen and photographed (browser.freeze_page: no page
// script runs any more, animations are at rest). Returns plain data: the visible elements (in the
// order of the flat tree: shadow roots and same-origin frames included) with their boxes in page
// coordinates, text, colours, font, scroll metrics and the stylesheet rules that declared the layout
// and colour properties on them; whether the element cap cut the page short; and, for surfaces whose
// drawing no element describes (canvases, frames it cannot read), whether they paint anything.
(args) => {
  const LINE_ATTR = args.lineAttr;
  const TRACKED = args.trackedProperties;
  const MAX_ELEMENTS = args.maxElements;
  const MAX_RULES = args.maxRules;
  const SKIP_TAGS = new Set(["HTML", "HEAD", "SCRIPT", "STYLE", "META", "LINK", "TITLE", "NOSCRIPT", "TEMPLATE", "BR", "WBR"]);
  const IMAGE_TAGS = new Set(["IMG", "SVG", "CANVAS", "VIDEO", "PICTURE", "IFRAME", "OBJECT", "EMBED"]);
  const CONTROL_TAGS = new Set(["INPUT", "BUTTON", "SELECT", "TEXTAREA"]);
  // A canvas bitmap larger than this is not read pixel by pixel: the renderer reads it off the screenshot.
  const MAX_CANVAS_PIXELS = 4000000;
  // Closed shadow roots, handed to this world by the renderer (browser.freeze_page).
  const closedRoots = new Map();
  for (const root of globalThis[args.closedRoots] || []) closedRoots.set(root.host, root);
  const shadowOf = (el) => el.shadowRoot || closedRoots.get(el) || null;

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

  // The frame element that shows each same-origin frame's document, and where that document's
  // viewport lies in page coordinates (the main document's: its scroll offset, read once, now).
  const frameOf = new Map();
  const originOf = new Map([[document, [scrollX, scrollY]]]);
  // The parent in the tree as drawn: the slot an element is shown in, its parent, the host of the
  // shadow root it heads, the frame element of the document it heads.
  const flatParent = (el) => {
    if (el.assignedSlot) return el.assignedSlot;
    if (el.parentElement) return el.parentElement;
    const node = el.parentNode;
    if (node && node.host) return node.host;
    return frameOf.get(el.ownerDocument) || null;
  };
  const ancestorsOf = (el) => {
    const chain = [];
    for (let e = el; e && e.nodeType === 1; e = flatParent(e)) chain.push(e);
    return chain;
  };
  const isAncestor = (candidate, el) => {
    for (let e = flatParent(el); e; e = flatParent(e)) if (e === candidate) return true;
    return false;
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
  // What is painted behind `el` at page point (x, y): the hit-test stack below it, so that positioned
  // siblings behind the text count, not only its ancestors. Hit tests answer for the viewport only, so
  // the window scrolls there first; no page script runs to react (the page is frozen), and every box
  // was measured before the first scroll. Text inside a frame is composited over its ancestors.
  const paintedBehind = (el, x, y) => {
    const root = el.getRootNode();
    if (el.ownerDocument !== document || !root.elementsFromPoint) return composite(ancestorsOf(el));
    if (y - scrollY < 0 || y - scrollY >= innerHeight || x - scrollX < 0 || x - scrollX >= innerWidth) {
      window.scrollTo({ left: Math.max(0, x - innerWidth / 2), top: Math.max(0, y - innerHeight / 2), behavior: "instant" });
    }
    const stack = root.elementsFromPoint(x - scrollX, y - scrollY);
    const at = stack.findIndex((e) => e === el || isAncestor(e, el));
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

  // Rules of the stylesheets of each root (the document, a shadow root, a frame's document),
  // flattened in order (inside @media/@supports too), read the first time an element of it is seen.
  const rules = [];
  const sheets = [];
  const matchedIn = new Map();
  const countStyleRules = (list) => Array.from(list).reduce(
    (n, r) => n + (r.selectorText !== undefined ? 1 : r.cssRules ? countStyleRules(r.cssRules) : 0), 0);
  const rulesOf = (root) => {
    if (matchedIn.has(root)) return matchedIn.get(root);
    const matched = [];
    matchedIn.set(root, matched);
    const view = (root.ownerDocument || root).defaultView || window;
    const list = [...Array.from(root.styleSheets || []), ...Array.from(root.adoptedStyleSheets || [])];
    for (const sheet of list) {
      if (sheets.length >= MAX_RULES || rules.length >= MAX_RULES) break;  // past it: no declaration lines
      const owner = sheet.ownerNode;
      const sheetIndex = sheets.length;
      sheets.push({ line: owner && owner.getAttribute ? Number(owner.getAttribute(LINE_ATTR)) || null : null });
      let ruleIndex = 0;
      const walk = (rulesList) => {
        for (const rule of Array.from(rulesList)) {
          if (rules.length >= MAX_RULES) return;
          if (rule.selectorText !== undefined && rule.style) {
            const declared = TRACKED.filter((p) => rule.style.getPropertyValue(p) !== "");
            const ref = rules.length;
            rules.push({ sheet: sheetIndex, index: ruleIndex, selector: rule.selectorText });
            if (declared.length) matched.push({ rule, ref, declared });
            ruleIndex += 1;
          } else if (rule.cssRules) {
            const applies = !rule.media || view.matchMedia(rule.media.mediaText).matches;
            if (applies) walk(rule.cssRules);
            else ruleIndex += countStyleRules(rule.cssRules);
          }
        }
      };
      try { walk(sheet.cssRules); } catch (e) { /* cross-origin sheet: unreadable */ }
    }
    return matched;
  };

  const declaredOn = (el) => {
    const css = {};
    for (const { rule, ref, declared } of rulesOf(el.getRootNode())) {
      let hit = false;
      try { hit = el.matches(rule.selectorText); } catch (e) { hit = false; }
      if (!hit) continue;
      for (const p of declared) (css[p] = css[p] || []).push(ref);
    }
    for (const p of TRACKED) if (el.style && el.style.getPropertyValue(p) !== "") (css[p] = css[p] || []).push(-1);
    return css;
  };

  // A client rect of a node of `doc` in page coordinates.
  const rectOf = (r, doc) => {
    const [ox, oy] = originOf.get(doc);
    return [r.left + ox, r.top + oy, r.right + ox, r.bottom + oy];
  };
  const directTextBox = (el) => {
    let text = "";
    let box = null;
    const rects = [];
    for (const node of el.childNodes) {
      if (node.nodeType !== 3 || !node.textContent.trim()) continue;
      text += node.textContent;
      const range = el.ownerDocument.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) {
        if (r.width <= 0 || r.height <= 0) continue;
        const b = rectOf(r, el.ownerDocument);
        rects.push(b);
        box = box ? [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]), Math.max(box[3], b[3])] : b;
      }
    }
    return { text: text.replace(/\s+/g, " ").trim(), box, rects: rects.slice(0, 50) };
  };

  // Whether a canvas holds painted pixels: text drawn on it is drawn content no element describes.
  // null where this world cannot tell (another kind of context, a bitmap too large to read): the
  // renderer then reads the canvas's box off the screenshot.
  const canvasPainted = (canvas) => {
    if (!canvas.width || !canvas.height) return false;
    if (canvas.width * canvas.height > MAX_CANVAS_PIXELS) return null;
    let context = null;
    try { context = canvas.getContext("2d"); } catch (e) { return null; }
    if (!context) return null;  // a WebGL or bitmap canvas
    try {
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
      return false;
    } catch (e) {
      return true;  // tainted by a picture it drew: it shows something it will not reveal
    }
  };
  // The document shown in a frame element, where this world may read it (same origin, srcdoc).
  const frameDocument = (el) => {
    try { return el.contentDocument && el.contentDocument.body ? el.contentDocument : null; } catch (e) { return null; }
  };

  const index = new Map();
  const elements = [];
  let truncated = false;
  let leftOutLine = null;
  // Depth first, in the order the tree is drawn; an explicit stack, for pages nested deeper than
  // JavaScript's call stack. Each entry: the element, and the line its source gives where it has no
  // start tag of its own (shadow content, a srcdoc frame's content: the host's or the frame's line).
  const stack = document.body ? [[document.body, null]] : [];
  const pushChildren = (children, line) => {
    for (let i = children.length - 1; i >= 0; i--) stack.push([children[i], line]);
  };
  while (stack.length) {
    const [el, inherited] = stack.pop();
    const tag = el.tagName.toUpperCase();
    if (SKIP_TAGS.has(tag)) continue;
    const line = Number(el.getAttribute(LINE_ATTR)) || inherited;
    const svg = el.namespaceURI === "http://www.w3.org/2000/svg";
    // Inside an SVG only its texts are read: a label drawn there collides, is cut or leaves the page
    // as any text does. Its shapes stay the SVG's own picture.
    const svgText = svg && tag === "TEXT";
    const visible = (!svg || tag === "SVG" || svgText)
      && (!el.checkVisibility || el.checkVisibility({ opacityProperty: true, visibilityProperty: true }));
    const r = visible ? el.getBoundingClientRect() : null;
    const drawn = visible && (r.width > 0 || r.height > 0);
    if (drawn && elements.length >= MAX_ELEMENTS) {
      // The cap: the rest of the page goes unchecked, and the renderer reports that it does.
      truncated = true;
      leftOutLine = line;
      break;
    }
    // What this element shows inside it, in drawing order: a readable frame's document, its shadow
    // tree, what is assigned to a slot, or its children (hidden or not: a child may show where its
    // parent does not). An SVG draws its own content. Content without a start tag of its own in the
    // source (a shadow tree, a srcdoc document) is blamed on the line of the element that holds it.
    const inner = drawn && (tag === "IFRAME" || tag === "FRAME") ? frameDocument(el) : null;
    const shadow = shadowOf(el);
    if (inner) pushChildren([inner.body], line);
    else if (shadow) pushChildren(shadow.children, line);
    else if (tag === "SLOT" && el.assignedElements().length) pushChildren(el.assignedElements(), inherited);
    else if (!svg) pushChildren(el.children, inherited);
    else if (tag === "SVG") pushChildren(Array.from(el.querySelectorAll("text")), inherited);
    if (!drawn) continue;
    const box = rectOf(r, el.ownerDocument);
    const cs = getComputedStyle(el);
    if (inner) {
      // The frame's document is laid out in the frame's content box.
      originOf.set(inner, [
        box[0] + el.clientLeft + (parseFloat(cs.paddingLeft) || 0),
        box[1] + el.clientTop + (parseFloat(cs.paddingTop) || 0),
      ]);
      frameOf.set(inner, el);
    }
    const { text, box: textBox, rects: textRects } = svgText
      ? { text: el.textContent.replace(/\s+/g, " ").trim(), box, rects: [box] }
      : directTextBox(el);
    let role = "block";
    if (IMAGE_TAGS.has(tag)) role = "image";
    else if (CONTROL_TAGS.has(tag)) role = "control";
    else if (text && textBox) role = "text";
    let parent = flatParent(el);
    while (parent && !index.has(parent)) parent = flatParent(parent);
    // A surface draws what no element here describes: a canvas, or a frame or plugin whose content
    // the page wrote itself (a data: or blob: URL) but this world cannot read (an opaque origin).
    // A frame the router blocked shows the browser's error page: nothing of the page's.
    const source = tag === "OBJECT" ? el.data : tag === "EMBED" || tag === "IFRAME" || tag === "FRAME" ? el.src : "";
    const surface = tag === "CANVAS" || (!inner && /^(data|blob|javascript):/i.test(source || ""));
    const painted = tag === "CANVAS" ? canvasPainted(el) : null;
    // Its content box: where it draws (a frame's border is the frame's own).
    const contentBox = surface ? [
      box[0] + el.clientLeft + (parseFloat(cs.paddingLeft) || 0),
      box[1] + el.clientTop + (parseFloat(cs.paddingTop) || 0),
      box[0] + el.clientLeft + el.clientWidth - (parseFloat(cs.paddingRight) || 0),
      box[1] + el.clientTop + el.clientHeight - (parseFloat(cs.paddingBottom) || 0),
    ] : null;
    let scroll = [el.scrollWidth, el.scrollHeight, el.clientWidth, el.clientHeight];
    if (tag === "SVG") {
      // An SVG's drawing adds nothing to its scroll size: the extent of its texts says what it cuts.
      let [left, top, right, bottom] = [0, 0, r.width, r.height];
      for (const label of el.querySelectorAll("text")) {
        const b = label.getBoundingClientRect();
        if (b.width <= 0 && b.height <= 0) continue;
        left = Math.min(left, b.left - r.left);
        top = Math.min(top, b.top - r.top);
        right = Math.max(right, b.right - r.left);
        bottom = Math.max(bottom, b.bottom - r.top);
      }
      scroll = [right - left, bottom - top, r.width, r.height];
    }
    if (inner) {
      const scroller = inner.scrollingElement || inner.documentElement;
      scroll = [scroller.scrollWidth, scroller.scrollHeight, scroller.clientWidth, scroller.clientHeight];
    }
    index.set(el, elements.length);
    elements.push({
      el,
      tag: tag.toLowerCase(),
      line,
      role,
      box,
      text_box: role === "text" ? textBox : null,
      text_rects: role === "text" ? textRects : null,
      text: role === "text" || role === "control" ? text || (el.value || "").toString().slice(0, 200) || null : null,
      font_px: parseFloat(cs.fontSize) || null,
      bold: (parseInt(cs.fontWeight, 10) || 400) >= 700,
      parent: parent ? index.get(parent) : null,
      // A frame clips what its document draws to its box.
      overflow: inner ? ["hidden", "hidden"] : [cs.overflowX, cs.overflowY],
      position: cs.position,
      display: cs.display,
      float: cs.cssFloat,
      scroll,
      surface,
      painted,
      content_box: contentBox,
      css: declaredOn(el),
      svg_text: svgText,
    });
  }

  // Colours last: reading what is painted behind a text may scroll the window, and every box above
  // was measured before that.
  for (const item of elements) {
    const cs = getComputedStyle(item.el);
    if (item.svg_text) {
      // Its colour is its fill, over shapes of the SVG that no element here describes: no contrast verdict.
      item.color = null;
      item.background = null;
      item.background_image = false;
      item.bg_from = null;
      continue;
    }
    const fg = parseColor(cs.color) || [0, 0, 0, 1];
    const bg = effectiveBackground(item.el, item.role === "text" ? item.text_rects : null, fg);
    item.color = hex(fg[3] < 1 ? over(fg, bg.color) : fg);
    item.background = hex(bg.color);
    item.background_image = bg.image;
    item.bg_from = bg.source && index.has(bg.source) ? index.get(bg.source) : null;
  }
  window.scrollTo({ left: originOf.get(document)[0], top: originOf.get(document)[1], behavior: "instant" });
  for (const item of elements) { delete item.el; delete item.svg_text; }
  const doc = document.documentElement;
  return {
    elements,
    rules,
    sheets,
    truncated,
    left_out_line: leftOutLine,
    page: [Math.max(doc.scrollWidth, document.body ? document.body.scrollWidth : 0), Math.max(doc.scrollHeight, document.body ? document.body.scrollHeight : 0)],
  };
}
