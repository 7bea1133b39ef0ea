// The queue's screen: admit, or "please see the staff". Never a temperature or a reason.
"use strict";
function renderPublic(s) {
  const panel = el("public");
  let cls = "idle", word = t("public.title"), sub = "";
  if (s.phase === "measuring") { cls = "measuring"; word = t("measuring"); sub = s.prompt ? t(s.prompt) : ""; }
  else if (s.phase === "decided" && s.current) {
    cls = s.current.decision === "admit" ? "admit" : "deny";
    const text = s.current.public_text || {};
    word = text[window.LANG] || text.zh || t(s.current.decision === "admit" ? "public.admit" : "public.see_staff");
  }
  panel.className = "public-panel " + cls;
  setText("public-word", word);
  setText("public-sub", sub);
  setText("public-rules", s.rules.map(localText).join("　·　"));
  fitText(el("public-word"), panel);
}

// Shrink a long message (the courier's) until it fits the panel; short ones keep the CSS size.
function fitText(word, panel) {
  word.style.fontSize = "";
  let size = parseFloat(getComputedStyle(word).fontSize);
  const overflows = () => word.scrollWidth > word.clientWidth + 1 || panel.scrollHeight > panel.clientHeight + 1;
  while (overflows() && size > 14) { size *= 0.92; word.style.fontSize = size + "px"; }
}
window.addEventListener("resize", () => fitText(el("public-word"), el("public")));
renderPublic(window.INITIAL);
liveStream("public", renderPublic, () => {});
