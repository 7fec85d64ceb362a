// The recordings page: plain JavaScript on the JSON API, no framework, no build step.
// Every request carries the read key from sessionStorage (asked once, never in a URL);
// images are fetched with it too and shown from blob URLs.
"use strict";

const KEY = "sco-api-key";
const REFRESH_MS = 5000;
const PLAY_MS = 120;
const $ = (selector) => document.querySelector(selector);
const needsKey = document.body.dataset.needsKey === "true";
const state = { cursor: null, filters: {}, timer: null, player: null, frames: [], current: 1 };

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const answer = await fetch(path, { ...options, headers });
  if (answer.status === 401) throw new Unauthorized();
  if (!answer.ok) {
    let detail = answer.statusText;
    try { detail = (await answer.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${answer.status}: ${detail}`);
  }
  return answer;
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

function show(view) {
  for (const id of ["key-form", "list-view", "recording-view"]) $(`#${id}`).hidden = id !== view;
  $("#forget-key").hidden = !needsKey || view === "key-form";
}

function askForKey(message = "") {
  stopTimers();
  $("#key-error").textContent = message;
  show("key-form");
  $("#key-input").focus();
}

function stopTimers() {
  clearInterval(state.timer);
  clearInterval(state.player);
  state.timer = state.player = null;
}

function text(tag, value, className) {
  const element = document.createElement(tag);
  element.textContent = value ?? "";
  if (className) element.className = className;
  return element;
}

function localTime(iso) {
  return new Date(iso).toLocaleString();
}

// --- the list -----------------------------------------------------------------------

async function loadCameras() {
  const cameras = await (await api("/v1/cameras")).json();
  const panel = $("#cameras");
  panel.replaceChildren(...cameras.map((camera) => {
    const card = document.createElement("article");
    card.className = "camera";
    card.dataset.camera = camera.camera_id;
    card.append(text("h3", camera.camera_id));
    const lines = [
      [`state: ${camera.state}`, `state-${camera.state}`],
      [`${camera.fps} fps · ${camera.width}×${camera.height}`],
      [`buffer ${camera.buffer_length} / ${camera.buffer_cap}`],
      [`late ${camera.late_frames} · dropped ${camera.dropped_frames}`],
    ];
    if (camera.last_error) lines.push([`last error: ${camera.last_error}`, "error"]);
    for (const [line, className] of lines) card.append(text("div", line, className));
    return card;
  }));
}

function query(cursor) {
  const params = new URLSearchParams({ limit: "25" });
  for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
  if (cursor) params.set("cursor", cursor);
  return `/v1/recordings?${params}`;
}

function row(recording) {
  const tr = document.createElement("tr");
  tr.dataset.recordingId = recording.recording_id;
  const thumb = document.createElement("td");
  if (["complete", "partial"].includes(recording.status)) {
    const img = document.createElement("img");
    img.alt = `thumbnail of ${recording.recording_id}`;
    blobUrl(`/v1/recordings/${recording.recording_id}/thumbnail`)
      .then((url) => { img.src = url; }).catch(() => {});
    thumb.append(img);
  }
  const link = text("a", recording.transaction_id || recording.recording_id.slice(0, 8));
  link.href = `#/recordings/${recording.recording_id}`;
  const transaction = document.createElement("td");
  transaction.append(link);
  tr.append(
    thumb, text("td", recording.camera_id), transaction,
    text("td", localTime(recording.event_time)),
    text("td", recording.status, `status-${recording.status}`),
    text("td", recording.hold ? `held: ${recording.hold.reason}` : ""),
  );
  tr.addEventListener("click", () => { location.hash = link.hash; });
  return tr;
}

async function loadPage(append) {
  const answer = await api(query(append ? state.cursor : null));
  const recordings = await answer.json();
  state.cursor = answer.headers.get("X-Next-Cursor");
  const body = $("#recordings tbody");
  const rows = recordings.map(row);
  if (append) body.append(...rows); else body.replaceChildren(...rows);
  $("#empty").hidden = body.children.length > 0;
  $("#more").hidden = !state.cursor;
}

async function showList() {
  stopTimers();
  show("list-view");
  await Promise.all([loadCameras(), loadPage(false)]);
  // New recordings appear as they arrive; the cameras panel stays current.
  state.timer = setInterval(() => {
    if ($("#recordings tbody").children.length <= 25) loadPage(false).catch(handle);
    loadCameras().catch(handle);
  }, REFRESH_MS);
}

// --- one recording ------------------------------------------------------------------

async function showFrame(number) {
  const frames = state.frames;
  if (!frames.length) return;
  state.current = Math.min(Math.max(1, number), frames.length);
  const frame = frames[state.current - 1];
  const img = $("#frame");
  const url = await blobUrl(`/v1/recordings/${state.recordingId}/frames/${state.current}`);
  if (frame !== frames[state.current - 1]) return; // moved on meanwhile
  URL.revokeObjectURL(img.src);
  img.src = url;
  img.dataset.frame = String(state.current);
  img.dataset.sha256 = frame.sha256;
  $("#scrubber").value = String(state.current);
  $("#frame-caption").textContent =
    `frame ${state.current} of ${frames.length} · captured ${localTime(frame.captured_at)}` +
    ` · source frame ${frame.source_index}`;
}

function facts(recording) {
  const entries = [
    ["Recording", recording.recording_id],
    ["Camera", recording.camera_id],
    ["Transaction", recording.transaction_id || "—"],
    ["Event time", localTime(recording.event_time)],
    ["Status", recording.status + (recording.reason ? ` — ${recording.reason}` : "")],
    ["Frames", `${recording.frames_saved ?? 0} of ${recording.frames_requested}`],
    ["Hold", recording.hold ? `${recording.hold.reason} (by ${recording.hold.by}, ${localTime(recording.hold.at)})` : "none"],
  ];
  $("#facts").replaceChildren(...entries.flatMap(([name, value]) => [text("dt", name), text("dd", value)]));
  $("#hold").hidden = Boolean(recording.hold);
  $("#release").hidden = !recording.hold;
}

async function showRecording(recordingId) {
  stopTimers();
  show("recording-view");
  state.recordingId = recordingId;
  state.frames = [];
  $("#verify-result").textContent = "";
  $("#frame").removeAttribute("src");
  const recording = await (await api(`/v1/recordings/${recordingId}`)).json();
  $("#title").textContent = `${recording.camera_id} · ${recording.transaction_id || recordingId}`;
  facts(recording);
  if (!["complete", "partial"].includes(recording.status)) {
    $("#metadata").textContent = "No files: the recording is " + recording.status + ".";
    return;
  }
  const manifest = await (await api(`/v1/recordings/${recordingId}/metadata`)).json();
  state.frames = manifest.frames;
  $("#scrubber").max = String(manifest.frames.length);
  $("#metadata").textContent = JSON.stringify(manifest.metadata, null, 2);
  await showFrame(1);
  $("#frame").focus();
}

async function verify() {
  $("#verify-result").textContent = "checking…";
  const result = await (await api(`/v1/recordings/${state.recordingId}/verify`, { method: "POST" })).json();
  $("#verify-result").textContent = result.ok
    ? `OK: all ${result.frames} frames match their SHA-256 in metadata.json, signed by this box`
    : `MISMATCH: ${result.problems.join("; ")}`;
  $("#verify-result").className = result.ok ? "" : "error";
}

async function download() {
  const url = await blobUrl(`/v1/recordings/${state.recordingId}/download`);
  const link = document.createElement("a");
  link.href = url;
  link.download = `${state.recordingId}.zip`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function setHold(hold) {
  const reason = prompt(hold ? "Why hold it (case number)?" : "Why release it?");
  if (!reason) return;
  const by = prompt("Your name?");
  if (!by) return;
  const base = `/v1/recordings/${state.recordingId}/hold`;
  const answer = hold
    ? await api(base, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason, by }) })
    : await api(`${base}?${new URLSearchParams({ reason, by })}`, { method: "DELETE" });
  facts(await answer.json());
}

function togglePlay() {
  if (state.player) {
    clearInterval(state.player);
    state.player = null;
    $("#play").textContent = "Play";
    return;
  }
  $("#play").textContent = "Pause";
  state.player = setInterval(() => {
    showFrame(state.current >= state.frames.length ? 1 : state.current + 1).catch(handle);
  }, PLAY_MS);
}

// --- wiring -------------------------------------------------------------------------

function handle(error) {
  if (error instanceof Unauthorized) {
    sessionStorage.removeItem(KEY);
    askForKey(needsKey && $("#key-input").value ? "That key was refused." : "");
  } else {
    console.error(error);
    $("#verify-result").textContent = String(error.message || error);
  }
}

function route() {
  if (needsKey && !sessionStorage.getItem(KEY)) return askForKey();
  const match = location.hash.match(/^#\/recordings\/([0-9a-f]{32})$/);
  (match ? showRecording(match[1]) : showList()).catch(handle);
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key-input").value.trim());
  route();
});
$("#forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); route(); });
$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const moment = (value) => (value ? new Date(value).toISOString() : "");
  state.filters = {
    camera_id: form.get("camera_id"),
    transaction_id: form.get("transaction_id").trim(),
    since: moment(form.get("since")),
    until: moment(form.get("until")),
  };
  loadPage(false).catch(handle);
});
$("#more").addEventListener("click", () => loadPage(true).catch(handle));
$("#prev").addEventListener("click", () => showFrame(state.current - 1).catch(handle));
$("#next").addEventListener("click", () => showFrame(state.current + 1).catch(handle));
$("#play").addEventListener("click", togglePlay);
$("#scrubber").addEventListener("input", (event) => showFrame(Number(event.target.value)).catch(handle));
$("#verify").addEventListener("click", () => verify().catch(handle));
$("#download").addEventListener("click", () => download().catch(handle));
$("#hold").addEventListener("click", () => setHold(true).catch(handle));
$("#release").addEventListener("click", () => setHold(false).catch(handle));
document.addEventListener("keydown", (event) => {
  if ($("#recording-view").hidden || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
  if (event.key === "ArrowLeft") showFrame(state.current - 1).catch(handle);
  if (event.key === "ArrowRight") showFrame(state.current + 1).catch(handle);
});
window.addEventListener("hashchange", route);
route();
