// Brings a page's animations to rest before it is photographed and measured; evaluated in the
// isolated world by vsdpo/render/web/browser.py (freeze_page), after page scripts were switched off.
// A finite animation or transition is played to its end (the state it was written to reach); an
// infinite one is cancelled, which shows the element as styled without it. Both the screenshot and
// the extraction then see that one state, however long the animation or its delay.
(args) => {
  const closedRoots = globalThis[args.closedRoots] || [];
  // Every root whose animations this world can reach: the document, open and closed shadow roots
  // (closed ones handed over through DevTools), and the documents of same-origin frames.
  const roots = [document];
  const seen = new Set(roots);
  const visit = (root) => {
    for (const el of root.querySelectorAll("*")) {
      const shadow = el.shadowRoot;
      if (shadow && !seen.has(shadow)) { seen.add(shadow); roots.push(shadow); }
      if (el.tagName === "IFRAME" || el.tagName === "FRAME") {
        let inner = null;
        try { inner = el.contentDocument; } catch (e) { inner = null; }  // another origin: unreachable
        if (inner && !seen.has(inner)) { seen.add(inner); roots.push(inner); }
      }
    }
  };
  for (const root of closedRoots) if (!seen.has(root)) { seen.add(root); roots.push(root); }
  for (let i = 0; i < roots.length; i++) visit(roots[i]);
  let settled = 0;
  for (const root of roots) {
    for (const animation of root.getAnimations ? root.getAnimations() : []) {
      if (!animation.effect) continue;
      try {
        if (Number.isFinite(animation.effect.getComputedTiming().endTime)) animation.finish();
        else animation.cancel();
        settled += 1;
      } catch (e) { /* an animation that cannot finish (a zero playback rate) stays as it is */ }
    }
    // SMIL animations of SVG run on their own clock: stop it where it is.
    for (const svg of root.querySelectorAll ? root.querySelectorAll("svg") : []) {
      if (svg.pauseAnimations) svg.pauseAnimations();
    }
  }
  // Lay the page out again now, with the animations' end states applied.
  void document.documentElement && document.documentElement.getBoundingClientRect();
  return settled;
}
