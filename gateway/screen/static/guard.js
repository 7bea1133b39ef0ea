// The guard's screen: renders snapshots pushed by the kiosk and sends guard actions.
"use strict";
let state = window.INITIAL;
let noticeTimer = null;
let lastNoticeAt = null;
const HEALTH_ORDER = ["thermometer", "camera", "disk", "checkpoint", "clock", "registry", "sync"];

function decisionWord(cur) {
  if (cur.kind === "override") return t("opened");  // the gate is open: never a red FEVER over it
  if (cur.flagged || cur.held) return t("fever");  // a person with an open case stays flagged
  return cur.decision === "admit" ? t("admit") : t("deny");
}

// Whom a decision is about, in one line: name and unit, else the pass or person id.
function whoText(d) {
  if (!d) return "";
  const bits = [];
  if (d.person && d.person.name) bits.push(d.person.name);
  if (d.person && d.person.unit) bits.push(d.person.unit);
  if (!bits.length && (d.person_id || d.pass_id)) bits.push(d.person_id || d.pass_id);
  if (!bits.length) bits.push(t("person.unknown"));
  if (d.pass_kind) bits.push(t("kind." + d.pass_kind));
  return bits.join(" · ");
}

function renderDecision(s) {
  const box = el("decision");
  let cls = "idle", word = t("waiting"), reason = t("waiting.hint"), person = "", whyLine = "";
  if (s.phase === "measuring") {
    cls = "measuring"; word = t("measuring"); reason = s.prompt ? t(s.prompt) : "";
  } else if (s.phase === "decided" && s.current) {
    const cur = s.current;
    cls = cur.kind === "override" ? "admit" : (cur.flagged || cur.held) ? "fever" : cur.decision;
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

// The decision on screen belongs to one person: the one shown, or the last one while it is
// recent and nobody new is being measured. The kiosk checks the same (gateway/override_target.py).
function personAtTheGate() {
  if (state.phase === "measuring") return null;
  const d = (state.phase === "decided" && state.current) || state.recent[0];
  if (!d || d.kind !== "decision" || !d.seq) return null;
  const age = (Date.now() - new Date(d.time).getTime()) / 1000;
  return age >= 0 && age <= (state.gate.override_window_s || 60) ? d : null;
}

function fmt(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(1); }

function renderReading(s) {
  const cur = s.current;
  // No decision on screen (waiting, or the next person being measured): neutral, never the last person's red.
  if (!cur || !cur.reading) {
    for (const id of ["reading-body", "reading-skin", "reading-offset", "reading-room"]) setText(id, "—");
    setText("reading-threshold", fmt(s.gate.threshold_c) + " ℃");
    el("reading-body").parentElement.classList.remove("hot");
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

// The open fever cases: a banner while any is open; the alarm sounds until the clinical reading is in.
function caseWho(a) {
  const who = (a.person && a.person.name) || a.person_id || a.pass_id || t("person.unknown");
  return a.source && a.source !== "infrared" ? who + "（" + t("case.source." + a.source) + "）" : who;
}
function renderAlerts(s) {
  const banner = el("fever-banner");
  banner.hidden = s.alerts.length === 0;
  if (s.alerts.length) {
    const a = s.alerts[0];
    const temp = a.max_c != null ? fmt(a.max_c) + " ℃" : "";
    setText("fever-detail", clockText(a.time) + " · " + caseWho(a) + " · " + temp + (s.alerts.length > 1 ? "  (+" + (s.alerts.length - 1) + ")" : ""));
  }
  alarm(s.alerts.some((a) => a.alarm));
  el("relief-bar").hidden = !s.relief;
  if (s.relief) setText("relief-text", t("relief", { name: s.relief.name }));
}

function renderStatic(s) {
  setText("gate-name", s.gate.name || s.gate.id);
  setText("gate-dir", t("direction." + s.gate.direction));
  const rules = el("rules"), texts = s.rules.map(localText);
  if (rules.dataset.shown !== JSON.stringify(texts)) {  // the policy in force builds them: they change
    rules.dataset.shown = JSON.stringify(texts);
    rules.textContent = "";
    for (const r of texts) { const li = document.createElement("li"); li.textContent = r; rules.append(li); }
  }
  setText("policy", t("policy." + s.policy.enforcement) + t("sep") + t("policy.visitor." + s.policy.visitor_mode));
}

// Duty reminders (issue 12): the shift's hand-over or nobody on duty; disinfection due or overdue.
function renderGateRules(s) {
  const g = s.gate_rules || {}, st = g.staffing || {};
  let shift = "", urgent = false;
  if (st.alarm) { shift = t(st.unattended === "refuse" ? "staffing.unstaffed_refuse" : "staffing.unstaffed", { since: clockText(st.unstaffed_since).slice(0, 5) }); urgent = true; }
  else if (st.handover_due) shift = t("staffing.handover", { time: clockText(st.shift_ends).slice(0, 5) });
  el("shift-bar").hidden = !shift;
  el("shift-bar").classList.toggle("urgent", urgent);
  setText("shift-text", shift);
  const due = g.disinfection && g.disinfection.reminder;
  el("disinfect-bar").hidden = !due;
  el("disinfect-bar").classList.toggle("urgent", !!due && due.status === "overdue");
  setText("disinfect-text", due ? t("disinfect." + due.status, { time: due.time }) : "");
  el("no-mask-btn").hidden = !g.mask_required;  // the policy says whether a mask is required
  document.body.dataset.lane = g.lane || "person";  // a vehicle lane puts 车辆通行 in the bar
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
  renderHealth(s); renderRecent(s); renderAlerts(s); renderNotice(s); renderGateRules(s);
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
  if (form) clearErrors(form);
  if (id !== "signin-modal" && id !== "more-modal" && !state.operator) {
    openModal("signin-modal");
    el("signin-modal").querySelector('[data-for="form"]').textContent = t("shift.need");
    return;
  }
  const cur = personAtTheGate();
  if (id === "override-modal") {
    form.elements.for_seq.value = cur ? cur.seq : "";
    const line = el("override-for");
    line.textContent = cur ? t("override.for", { who: whoText(cur) + " · " + clockText(cur.time) + " · " + decisionWord(cur) }) : t("override.for_none");
    line.classList.toggle("none", !cur);
  }
  if (id === "case-modal") {
    const a = state.alerts[0];
    form.elements.case_id.value = a ? a.case_id : "";
    setText("case-who", a ? t("case.who", { who: caseWho(a), time: clockText(a.time), n: a.readings, max: fmt(a.max_c) })
      + (a.clinical_c != null ? " · " + t("case.clinical_done", { c: fmt(a.clinical_c) }) : "") : "");
  }
  if (id === "vehicle-modal")  // hidden fields survive form.reset(): a new vehicle starts typed-in
    for (let i = 0; i < 5; i++) form.elements["occupant_" + i + "_source"].value = "";
  if (id === "vehicle-modal" && state.gate_rules && state.gate_rules.vehicle_waiting && !form.elements.plate.value)
    form.elements.plate.value = state.gate_rules.vehicle_waiting;
  if (id === "staff-modal" && state.operator && !form.elements.person.value) form.elements.person.value = state.operator.name;
  dlg.showModal();
  if (!form) return;
  const first = form.querySelector("input:not([type=hidden]):not([type=radio]):not([type=checkbox])");
  if (first && id !== "override-modal") first.focus();
}
// A button inside a dialog (the "More" menu) closes that dialog before it opens its own.
function closeParentDialog(b) { const d = b.closest("dialog"); if (d) d.close(); }
document.querySelectorAll("[data-modal]").forEach((b) => b.addEventListener("click", () => { closeParentDialog(b); openModal(b.dataset.modal); }));
document.querySelectorAll("[data-same]").forEach((b) => b.addEventListener("click", () => { closeParentDialog(b); el(b.dataset.same).click(); }));
document.querySelectorAll("[data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));
el("signin-btn").addEventListener("click", () => openModal("signin-modal"));
el("fever-ack-btn").addEventListener("click", () => openModal("case-modal"));
el("signout-btn").addEventListener("click", () => post("signout", {}));
el("remeasure-btn").addEventListener("click", async () => {
  if (!state.operator) { openModal("signin-modal"); return; }
  // The person on screen, else the person of the open fever case, else the last decision.
  const seq = (state.current && state.current.seq) || (state.alerts[0] && state.alerts[0].for_seq) || (state.recent[0] && state.recent[0].seq);
  const body = await post("remeasure", { for_seq: seq });
  if (!body.ok) showNotice(Object.values(body.errors || {}).map((e) => t(e.key, e.values)).join("；"), true);
});
// One tap: the guard refuses the person in front (no mask; refuses to be measured).
async function refuse(refusal) {
  if (!state.operator) { openModal("signin-modal"); return; }
  const seq = state.phase === "decided" && state.current ? state.current.seq : null;
  const body = await post("refuse", { refusal: refusal, for_seq: seq });
  if (!body.ok) showNotice(Object.values(body.errors || {}).map((e) => t(e.key, e.values)).join("；"), true);
}
el("no-mask-btn").addEventListener("click", () => refuse("no_mask"));
// A box the guard types into is the guard's reading, not the thermometer's.
for (let i = 0; i < 5; i++) {
  const form = el("vehicle-modal").querySelector("form");
  form.elements["occupant_" + i + "_c"].addEventListener("input", () => { form.elements["occupant_" + i + "_source"].value = ""; });
}
// A vehicle occupant held up to the thermometer: its reading fills the next empty box (automatic where possible).
el("vehicle-read-btn").addEventListener("click", async () => {
  const form = el("vehicle-modal").querySelector("form");
  const body = await post("vehicle-reading", {});
  if (!body.ok) { showErrors(form, body.errors || { form: { key: "offline" } }); return; }
  for (let i = 0; i < 5; i++) {
    const box = form.elements["occupant_" + i + "_c"];
    if (!box.value) { box.value = Number(body.body_c).toFixed(1); form.elements["occupant_" + i + "_source"].value = "thermometer"; break; }
  }
});
el("refuse-measure-btn").addEventListener("click", () => refuse("refused_measurement"));
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
