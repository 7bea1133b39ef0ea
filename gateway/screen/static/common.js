// Shared by the guard and public pages: texts, time formatting, the live stream.
"use strict";
function t(key, values) {
  let s = (window.T && window.T[key]) || key;
  if (values) for (const [k, v] of Object.entries(values)) s = s.split("{" + k + "}").join(v);
  return s;
}
function reasonText(code) { return (window.T["reason." + code]) || code; }
function clockText(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toLocaleTimeString(window.LANG === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}
function el(id) { return document.getElementById(id); }
function setText(id, value) { const e = el(id); if (e && e.textContent !== value) e.textContent = value; }
// Server-sent events: the browser reconnects by itself; `onLive(bool)` shows the link state.
function liveStream(view, render, onLive) {
  const source = new EventSource("/api/events" + (view === "public" ? "?view=public" : ""));
  source.addEventListener("state", (ev) => { onLive(true); render(JSON.parse(ev.data)); });
  source.onerror = () => onLive(false);
  return source;
}

// A posted text: a plain string, or {zh, en} in the screen's language.
function localText(r) { return typeof r === "string" ? r : (r[window.LANG] || r.zh || ""); }
