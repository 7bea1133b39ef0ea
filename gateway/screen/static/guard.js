// The guard's screen: renders snapshots pushed by the kiosk and sends guard actions.
"use strict";
let state = window.INITIAL;
let noticeTimer = null;
let lastNoticeAt = null;
const HEALTH_ORDER = ["thermometer", "camera", "disk", "checkpoint", "clock", "registry", "sync"];

function decisionWord(cur) {
  if (cur.flagged) return t("fever");
  return cur.decision === "admit" ? t("admit") : t("deny");
}

function renderDecision(s) {
  const box = el("decision");
  let cls = "idle", word = t("waiting"), reason = t("waiting.hint"), person = "", whyLine = "";
  if (s.phase === "measuring") {
    cls = "measuring"; word = t("measuring"); reason = s.prompt ? t(s.prompt) : "";
  } else if (s.phase === "decided" && s.current) {
    const cur = s.current;
    cls = cur.flagged ? "fever" : cur.decision;
    word = decisionWord(cur);
    // What to do (from the decision core), then the reasons in words.
    const what = cur.guard_text ? (cur.guard_text[window.LANG] || cur.guard_text.zh) : "";
    const reasons = cur.reasons || [];
    const why = reasons.filter((r) => r !== "ok" || reasons.length === 1).map(reasonText).join("；");
    // Admit: the reasons ("valid pass, normal temperature"); "admitted" twice says nothing.
    // Deny: what to do, and the reasons in words when there is more than one.
    if (cur.kind === "override") reason = what;  // opened by the guard: say so, not what was missing
    else if (cur.decision === "admit" && !cur.flagged) reason = why || what;
    else { reason = what || why; if ((cur.reasons || []).length > 1 || !what) whyLine = why; }
    if (cur.unlogged) reason += " — " + t("done.override_unlogged");
    const bits = [];
    if (cur.person && cur.person.name) bits.push(cur.person.name);
    if (cur.person && cur.person.unit) bits.push(cur.person.unit);
    if (!bits.length && cur.person_id) bits.push(cur.person_id);
    if (cur.operator && cur.kind !== "decision") bits.push(t("override.by", { operator: cur.operator }));
    if (cur.override_reason) bits.push(t("override.reason." + cur.override_reason));
    if (cur.note) bits.push(cur.note);
    person = bits.join(" · ");
  }
  box.className = "decision " + cls;
  box.dataset.seq = s.current && s.current.seq ? s.current.seq : "";
  setText("decision-word", word);
  setText("decision-reason", reason);
  setText("decision-why", whyLine === reason ? "" : whyLine);
  setText("decision-person", person);
}

function fmt(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(1); }

function renderReading(s) {
  const cur = s.current;
  if (!cur || !cur.reading) {
    if (s.phase !== "measuring") for (const id of ["reading-body", "reading-skin", "reading-offset", "reading-room"]) setText(id, "—");
    setText("reading-threshold", fmt(s.gate.threshold_c) + " ℃");
    el("reading-body").classList.remove("hot");
    return;
  }
  const r = cur.reading;
  setText("reading-body", fmt(r.body_c));
  el("reading-body").parentElement.classList.toggle("hot", !!cur.flagged);
  setText("reading-skin", r.object_c == null ? "—" : fmt(r.object_c) + " ℃");
  setText("reading-offset", r.offset_c == null ? "—" : (r.offset_c >= 0 ? "+" : "") + fmt(r.offset_c) + " ℃");
  setText("reading-room", r.ambient_c == null ? "—" : fmt(r.ambient_c) + " ℃");
  setText("reading-threshold", fmt(r.threshold_c ?? s.gate.threshold_c) + " ℃");
}

function renderHealth(s) {
  const ul = el("health");
  ul.textContent = "";
  for (const name of HEALTH_ORDER) {
    const h = s.health[name];
    if (!h) continue;
    const li = document.createElement("li");
    li.className = h.status;
    li.dataset.device = name;
    const dot = document.createElement("span"); dot.className = "dot";
    const label = document.createElement("span");
    label.textContent = t("health." + name) + t("colon") + (h.status === "ok" && h.key ? t(h.key, h.values) : h.key && h.status !== "off" ? t(h.key, h.values) : t("health." + h.status));
    li.append(dot, label);
    ul.append(li);
  }
  const paused = HEALTH_ORDER.map((n) => s.health[n]).filter((h) => h && h.blocks_entry && h.status === "fault");
  el("paused-bar").hidden = paused.length === 0;
  const names = HEALTH_ORDER.filter((n) => s.health[n] && s.health[n].blocks_entry && s.health[n].status === "fault");
  if (paused.length) setText("paused-text", names.map((n) => t("paused." + n)).join("；") + " — " + t("health.paused"));
}

function renderRecent(s) {
  const ol = el("recent");
  ol.textContent = "";
  if (!s.recent.length) {
    const li = document.createElement("li"); li.className = "empty"; li.textContent = t("recent.none"); ol.append(li); return;
  }
  for (const d of s.recent) {
    const li = document.createElement("li");
    const time = document.createElement("span"); time.className = "time"; time.textContent = clockText(d.time).slice(0, 8);
    const tag = document.createElement("span"); tag.className = "tag " + d.decision;
    if (d.flagged) tag.classList.add("fever");
    tag.textContent = d.flagged ? t("tag.fever") : t("tag." + d.decision);
    const what = document.createElement("span"); what.className = "what";
    const who = (d.person && d.person.name) || d.person_id || "";
    const why = d.kind === "override"
      ? t("override.by", { operator: d.operator || "" }) + (d.override_reason ? "：" + t("override.reason." + d.override_reason) : "")
      : (d.reasons || []).map(reasonText).join("；");
    what.textContent = (who ? who + " · " : "") + why;
    li.append(time, tag, what);
    ol.append(li);
  }
}

function renderAlerts(s) {
  const banner = el("fever-banner");
  banner.hidden = s.alerts.length === 0;
  if (s.alerts.length) {
    const a = s.alerts[0];
    const who = (a.person && a.person.name) || a.person_id || t("person.unknown");
    const temp = a.reading && a.reading.body_c != null ? fmt(a.reading.body_c) + " ℃" : "";
    setText("fever-detail", clockText(a.time) + " · " + who + " · " + temp + (s.alerts.length > 1 ? "  (+" + (s.alerts.length - 1) + ")" : ""));
  }
  alarm(s.alerts.length > 0);
}

function renderStatic(s) {
  setText("gate-name", s.gate.name || s.gate.id);
  setText("gate-dir", t("direction." + s.gate.direction));
  const rules = el("rules");
  if (rules.childElementCount !== s.rules.length) {
    rules.textContent = "";
    for (const r of s.rules) { const li = document.createElement("li"); li.textContent = r; rules.append(li); }
  }
  setText("policy", t("policy." + s.policy.enforcement) + t("sep") + t("policy.visitor." + s.policy.visitor_mode));
}

function renderOperator(s) {
  setText("operator-name", s.operator ? s.operator.name : t("shift.none"));
  el("signin-btn").hidden = !!s.operator;
  el("signout-btn").hidden = !s.operator;
}

function renderNotice(s) {
  const n = s.notice;
  if (!n || n.at === lastNoticeAt) return;
  lastNoticeAt = n.at;
  if (Date.now() / 1000 - n.at > 10) return;
  showNotice(t(n.key, n.values), n.key.indexOf("unlogged") >= 0);
}

function showNotice(text, bad) {
  const box = el("notice");
  box.textContent = text;
  box.classList.toggle("bad", !!bad);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { box.textContent = ""; }, 6000);
}

function render(s) {
  state = s;
  renderStatic(s); renderOperator(s); renderDecision(s); renderReading(s);
  setText("count-admit", String(s.counts.admit)); setText("count-deny", String(s.counts.deny));
  setText("count-flagged", String(s.counts.flagged));
  renderHealth(s); renderRecent(s); renderAlerts(s); renderNotice(s);
  document.body.dataset.version = s.version;
}

// ---- fever sound: a two-tone alarm repeated until acknowledged ----
let audio = null, alarmTimer = null;
function unlockAudio() {
  if (!audio) { try { audio = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { audio = null; } }
  if (audio && audio.state === "suspended") audio.resume();
}
function beep() {
  if (!audio) unlockAudio();
  if (!audio || audio.state !== "running") return;
  const now = audio.currentTime;
  [0, 0.25, 0.5].forEach((offset, i) => {
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = i % 2 ? 660 : 990; osc.type = "square";
    gain.gain.setValueAtTime(0.25, now + offset); gain.gain.setValueAtTime(0, now + offset + 0.2);
    osc.connect(gain).connect(audio.destination); osc.start(now + offset); osc.stop(now + offset + 0.22);
  });
}
function alarm(on) {
  if (on && !alarmTimer) { beep(); alarmTimer = setInterval(beep, 1500); }
  if (!on && alarmTimer) { clearInterval(alarmTimer); alarmTimer = null; }
  document.body.dataset.alarm = on ? "on" : "off";
}
document.addEventListener("pointerdown", unlockAudio, { once: false });

// ---- forms ----
function clearErrors(form) {
  form.querySelectorAll("[data-for]").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((i) => i.classList.remove("invalid"));
}
function showErrors(form, errors) {
  for (const [field, err] of Object.entries(errors)) {
    const p = form.querySelector('[data-for="' + field + '"]') || form.querySelector('[data-for="form"]');
    if (p) p.textContent = t(err.key, err.values);
    const input = form.querySelector('[name="' + field + '"]');
    if (input) input.classList.add("invalid");
  }
}
function formData(form) {
  const data = {};
  for (const input of form.querySelectorAll("input[name]")) {
    if (input.type === "checkbox") data[input.name] = input.checked;
    else if (input.type === "radio") { if (input.checked) data[input.name] = input.value; }
    else data[input.name] = input.value;
  }
  return data;
}
async function post(action, data) {
  const res = await fetch("/api/" + action, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  let body = {};
  try { body = await res.json(); } catch (e) { body = { ok: false, errors: { form: { key: "offline" } } }; }
  if (res.status === 401) { location.href = "/login"; }
  return body;
}
function openModal(id) {
  const dlg = el(id);
  const form = dlg.querySelector("form");
  clearErrors(form);
  if (id !== "signin-modal" && !state.operator) {
    openModal("signin-modal");
    el("signin-modal").querySelector('[data-for="form"]').textContent = t("shift.need");
    return;
  }
  const seq = state.current && state.current.seq ? state.current.seq : (state.recent[0] && state.recent[0].seq) || "";
  if (id === "override-modal") form.elements.for_seq.value = seq;
  if (id === "ack-modal") form.elements.seq.value = state.alerts.length ? state.alerts[0].seq : "";
  if (id === "visitor-modal" && state.current && state.current.reading && state.current.reading.body_c != null && !form.elements.temperature_c.value)
    form.elements.temperature_c.value = Number(state.current.reading.body_c).toFixed(1);
  if (id === "staff-modal" && state.operator && !form.elements.person.value) form.elements.person.value = state.operator.name;
  dlg.showModal();
  const first = form.querySelector("input:not([type=hidden]):not([type=radio]):not([type=checkbox])");
  if (first && id !== "override-modal") first.focus();
}
document.querySelectorAll("[data-modal]").forEach((b) => b.addEventListener("click", () => openModal(b.dataset.modal)));
document.querySelectorAll("[data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
el("signin-btn").addEventListener("click", () => openModal("signin-modal"));
el("fever-ack-btn").addEventListener("click", () => openModal("ack-modal"));
el("signout-btn").addEventListener("click", () => post("signout", {}));
el("remeasure-btn").addEventListener("click", async () => {
  if (!state.operator) { openModal("signin-modal"); return; }
  const seq = state.current && state.current.seq ? state.current.seq : (state.recent[0] && state.recent[0].seq);
  const body = await post("remeasure", { for_seq: seq });
  if (!body.ok) showNotice(Object.values(body.errors || {}).map((e) => t(e.key, e.values)).join("；"), true);
});
// Typing in a field clears its error; quick notes add a common phrase to the note.
document.querySelectorAll("dialog input").forEach((input) => input.addEventListener("input", () => {
  input.classList.remove("invalid");
  for (const field of [input.name, "form"]) {
    const p = input.form && input.form.querySelector('[data-for="' + field + '"]');
    if (p) p.textContent = "";
  }
}));
document.querySelectorAll("[data-quick]").forEach((b) => b.addEventListener("click", () => {
  const note = b.closest("form").elements.note;
  note.value = note.value ? note.value + "；" + b.dataset.quick : b.dataset.quick;
  note.dispatchEvent(new Event("input"));
}));
document.querySelectorAll("dialog form").forEach((form) => form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const body = await post(form.dataset.action, formData(form));
    if (body.ok) { form.reset(); form.closest("dialog").close(); }
    else if (body.errors) showErrors(form, body.errors);
    else showErrors(form, { form: { key: body.error || "offline" } });
  } finally { button.disabled = false; }
}));

// ---- camera: ask for the next frame when the last one has arrived ----
function nextFrame() {
  if (document.hidden) { setTimeout(nextFrame, 1000); return; }
  const img = el("camera");
  img.onload = () => { el("camera-none").hidden = true; setTimeout(nextFrame, 120); };
  img.onerror = () => { el("camera-none").hidden = false; setTimeout(nextFrame, 1000); };
  img.src = "/camera.jpg?t=" + Date.now();
}

function tick() { setText("clock", new Date().toLocaleTimeString(window.LANG === "zh" ? "zh-CN" : "en-GB", { hour12: false })); }

render(state);
tick(); setInterval(tick, 1000);
window.addEventListener("load", nextFrame);
liveStream("guard", render, (up) => { el("live").classList.toggle("down", !up); setText("live", "● " + (up ? t("live") : t("offline"))); });
