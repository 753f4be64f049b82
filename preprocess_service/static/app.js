// The service's page: upload, verdict, per-frame chart, display frames with boxes, integrity, history;
// long videos as jobs (POST /jobs, polled), with their timeline over the whole video.
// Plain JavaScript, no build step, nothing loaded from elsewhere. Talks only to this service's API.
"use strict";

const $ = (id) => document.getElementById(id);
const MESSAGES = {
  empty_file: "The file is empty.",
  file_too_large: "The file is too large for this service.",
  not_a_video: "This file is not a video this service can read (MP4/QuickTime, Matroska/WebM or AVI).",
  no_video_stream: "The file has no video track.",
  unreadable_video: "The video could not be decoded (damaged or truncated?).",
  too_few_frames: "The video is too short: it needs at least two frames.",
  video_too_large: "The video's picture is larger than this service accepts.",
  decode_budget_exceeded: "The video takes too long to decode here.",
  no_face_detected: "No face was found in the video, so there is nothing to judge.",
  upload_timeout: "The upload stalled; try again.",
  rate_limited: "Too many requests from you; wait a moment.",
  overloaded: "The service is busy.",
  backend_unavailable: "The model server is not answering.",
  unauthorized: "This service needs an API key (top right).",
  jobs_unavailable: "This service runs no jobs at the moment.",
  worker_lost: "The job's worker stopped before it finished; submit the video again.",
  video_too_long: "The video is longer than this service's jobs take.",
};

let current = null; // { file, answer }

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function explain(status, body, retryAfter) {
  const code = body && body.error ? body.error.code : `http_${status}`;
  let text = MESSAGES[code] || (body && body.error ? body.error.message : `The service answered ${status}.`);
  if (retryAfter) text += ` Retry after ${retryAfter} s.`;
  return text;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function upload(file, route = "/predict/", uploaded = "Analyzing…") {
  // XMLHttpRequest, not fetch: it reports upload progress.
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", route);
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) $("progress").value = (100 * event.loaded) / event.total;
      if (event.loaded === event.total) $("status").textContent = uploaded;
    };
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (e) { body = null; }
      resolve({ status: request.status, body, retryAfter: request.getResponseHeader("Retry-After") });
    };
    request.onerror = () => resolve({ status: 0, body: null, retryAfter: null });
    const form = new FormData();
    form.append("file", file);
    request.send(form);
  });
}

// A video longer than this goes to a job by itself: 30 frames of /predict/ are one every 2 s or more.
const LONG_VIDEO_S = 60;

// The file's duration as this browser reads it (an off-page <video>, metadata only), or null when it
// cannot (a codec or container it lacks) or takes longer than `waitMs`.
function videoDuration(file, waitMs = 2000) {
  return new Promise((resolve) => {
    const video = document.createElement("video");
    const url = URL.createObjectURL(file);
    let timer = null;
    const finish = (duration) => {
      clearTimeout(timer);
      video.onloadedmetadata = null;
      video.onerror = null;
      video.removeAttribute("src");
      URL.revokeObjectURL(url);
      resolve(duration);
    };
    timer = setTimeout(() => finish(null), waitMs);
    video.muted = true;
    video.preload = "metadata";
    video.onloadedmetadata = () => finish(Number.isFinite(video.duration) ? video.duration : null);
    video.onerror = () => finish(null);
    video.src = url;
  });
}

async function analyze(file) {
  stopJob();
  $("error").hidden = true;
  $("result").hidden = true;
  $("job").hidden = true;
  if ($("as-job").checked) { submitJob(file, null); return; }
  $("status").textContent = `Reading ${file.name}…`;
  const duration = await videoDuration(file);
  if (duration !== null && duration > LONG_VIDEO_S) { submitJob(file, duration); return; }
  $("progress").hidden = false;
  $("progress").value = 0;
  $("status").textContent = `Uploading ${file.name}…`;
  const { status, body, retryAfter } = await upload(file);
  $("progress").hidden = true;
  $("status").textContent = "";
  if (status !== 200) {
    showError(status === 0 ? "The service could not be reached." : explain(status, body, retryAfter));
    return;
  }
  current = { file, answer: body };
  render(body, file);
  loadRecent();
}

// ---- Jobs: the whole video, analysed by a worker; the page polls GET /jobs/{id} until it is finished.

const POLL_MS = 2000;
const FINAL = new Set(["done", "failed", "cancelled"]);
const STATE_WORDS = { queued: "queued: waiting for a worker", running: "running", done: "done", failed: "failed", cancelled: "cancelled" };
let job = null; // the job this page follows: { id, file, view, timer, controller, stopped }

function stopJob() {
  if (!job) return;
  job.stopped = true;
  clearTimeout(job.timer);
  if (job.controller) job.controller.abort();
  job = null;
}

async function submitJob(file, duration) {
  const note = $("job-note");
  note.textContent = duration === null ? "" : `This video is ${clock(duration)} long: analysing it as a job`;
  note.hidden = duration === null;
  $("job").hidden = false;
  $("timeline-part").hidden = true;
  $("job-cancel").hidden = true;
  $("job-progress").value = 0;
  $("job-state").textContent = "Submitting the job…";
  $("progress").hidden = false;
  $("progress").value = 0;
  $("status").textContent = `Uploading ${file.name}…`;
  const { status, body, retryAfter } = await upload(file, "/jobs", "Submitting the job…");
  $("progress").hidden = true;
  $("status").textContent = "";
  if (status !== 202) {
    $("job").hidden = true;
    showError(status === 0 ? "The service could not be reached." : explain(status, body, retryAfter));
    return;
  }
  job = { id: body.id, file, view: null, timer: null, controller: null, stopped: false };
  showJob({ state: body.state, progress: 0, timeline: null });
  poll(job);
}

async function poll(followed) {
  followed.controller = new AbortController();
  let response = null;
  let body = null;
  try {
    response = await fetch(`/jobs/${followed.id}`, { headers: headers(), signal: followed.controller.signal, cache: "no-store" });
    body = await response.json().catch(() => null);
  } catch (e) {
    response = null; // aborted, or the service unreachable for a moment
  }
  if (followed.stopped) return;
  if (response && response.ok) {
    followed.view = body;
    showJob(body);
    if (FINAL.has(body.state)) { finishJob(body, followed); return; }
  } else if (response && ![429, 502, 503, 504].includes(response.status)) {
    stopJob();
    showError(explain(response.status, body));
    return;
  }
  // a refused or lost poll is tried again (after Retry-After, if longer): the job goes on without us
  const wait = 1000 * Number(response && response.headers.get("Retry-After"));
  followed.timer = setTimeout(() => poll(followed), Number.isFinite(wait) ? Math.max(POLL_MS, wait) : POLL_MS);
}

function showJob(view) {
  $("job").dataset.state = view.state;
  $("job-progress").value = view.progress || 0;
  const timeline = view.result ? view.result.timeline : view.timeline;
  let words = `Job ${STATE_WORDS[view.state] || view.state}`;
  if (view.state === "running") {
    words += `: ${Math.floor(100 * (view.progress || 0))} %`;
    if (timeline && timeline.frames.length) {
      words += ` (${clock(timeline.frames[timeline.frames.length - 1].t)} of ${clock(timeline.duration_s)} scanned)`;
    }
  }
  $("job-state").textContent = words;
  $("job-cancel").hidden = FINAL.has(view.state);
  if (timeline) drawTimeline(timeline, view.state === "done");
}

function finishJob(view, followed) {
  stopJob();
  if (view.state === "done") {
    current = { file: followed.file, answer: view.result };
    render(view.result, followed.file);
    loadRecent();
  } else if (view.state === "failed") {
    showError(explain(0, view)); // the code /predict/ would have answered, in the same words
  }
}

async function cancelJob() {
  const followed = job;
  if (!followed) return;
  $("job-cancel").disabled = true;
  let response = null;
  let body = null;
  try {
    response = await fetch(`/jobs/${followed.id}`, { method: "DELETE", headers: headers() });
    body = await response.json().catch(() => null);
  } catch (e) {
    response = null;
  }
  $("job-cancel").disabled = false;
  if (!response || !response.ok) {
    showError(response ? explain(response.status, body, response.headers.get("Retry-After")) : "The service could not be reached.");
    return;
  }
  stopJob();
  if (body.erased) { // it had finished between two polls: DELETE erased it
    $("job").dataset.state = body.state;
    $("job-state").textContent = `The job had just finished (${body.state}); cancelling it erased it.`;
    $("job-cancel").hidden = true;
    return;
  }
  showJob({ ...(followed.view || {}), state: "cancelled" });
}

// Seconds as a clock reads them: 295 is "4:55", 3725 is "1:02:05".
function clock(seconds) {
  const whole = Math.round(seconds);
  const two = (n) => String(n).padStart(2, "0");
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  return hours ? `${hours}:${two(minutes)}:${two(whole % 60)}` : `${minutes}:${two(whole % 60)}`;
}

// The words a user reads for the service's codes: the raw code NO_FACE never reaches the page.
const LABELS = { NO_FACE: "no face found" };
function labelInWords(label) { return LABELS[label] || label; }

// Seconds as people read them: 1.6667 is "1.67 s", 2.0 is "2 s".
function formatSeconds(seconds, decimals = 2) { return `${Number(seconds.toFixed(decimals))} s`; }

// Newer answers may carry the flag at the top level too; the model's own flag is always there.
function isDemo(answer) { return answer.untrained_demo === true || answer.model.untrained_demo === true; }

// `deepfake-eval --write-threshold` records the thresholds it chose on labelled videos with the
// model; until one has, every rule's threshold is the default 0.5, and a score of 100 % is only the
// network's own output, never checked against anything: such a verdict is marked NOT EVALUATED.
const DEFAULT_THRESHOLD = 0.5;
function isEvaluated(answer) { return Object.values(answer.verdicts).some((v) => v.threshold !== DEFAULT_THRESHOLD); }

function showVerdict(answer) {
  const demo = isDemo(answer);
  $("demo-banner").hidden = !demo;
  const verdict = $("verdict");
  verdict.textContent = labelInWords(answer.result);
  // Random weights decide nothing: their verdict gets a grey DEMO badge, never the green or red
  // of an answer one could act on.
  // A real checkpoint not yet evaluated: its colour as an outline only, beside the NOT EVALUATED tag.
  const uncalibrated = !demo && !isEvaluated(answer);
  verdict.className = demo ? "verdict demo" : `verdict ${answer.result}${uncalibrated ? " uncalibrated" : ""}`;
  $("demo-verdict").hidden = !demo;
  $("uncalibrated").hidden = !uncalibrated;
  // The winning class's probability as the model gives it: its own score, not a measured accuracy.
  $("confidence").textContent = `model's own score ${answer.confidence.toFixed(1)} % (${answer.verdict_rule} rule)`;
  $("confidence").classList.toggle("muted", demo || uncalibrated);
}

function render(answer, file) {
  showVerdict(answer);
  $("cached").hidden = !answer.cached;
  const rules = $("rules").querySelector("tbody");
  rules.replaceChildren(...Object.entries(answer.verdicts).map(([rule, v]) => row([
    rule + (rule === answer.verdict_rule ? " (used)" : ""), labelInWords(v.result), v.p_fake.toFixed(4), v.confidence.toFixed(1), v.threshold,
  ])));
  drawChart(answer);
  drawFrames(answer, file);
  const m = answer.metadata;
  const facts = [
    ["file", answer.filename], ["SHA-256", answer.sha256_hex],
    ["device", [m.make, m.model].filter(Boolean).join(" ") || "unknown"],
    ["codec", m.video_codec], ["duration", formatSeconds(m.duration)], ["resolution", `${m.width}×${m.height}`],
    ["rotation", `${m.rotation}°`], ["frames analyzed", `${answer.frames_analyzed} (${answer.frames_with_face} with a face)`],
    ["model", `${answer.model.family}, ${answer.model.precision}, ${answer.model.runtime}`],
  ];
  $("metadata").replaceChildren(...facts.flatMap(([k, v]) => [element("dt", k), element("dd", String(v ?? ""))]));
  $("integrity").textContent = "";
  $("result").hidden = false;
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? wrap(cell) : element("td", String(cell)));
  return tr;
}

function wrap(node) { const td = document.createElement("td"); td.append(node); return td; }

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

// The chart's box in SVG units; the page's CSS scales the whole drawing.
const CHART = { width: 900, height: 260, left: 48, right: 16, top: 12, bottom: 44 };

// Evenly spaced times 0, step, 2·step… up to `last`, with step 1, 2 or 5 × a power of ten: the
// smallest such step that gives at most 8 ticks. The next step up is at most 2.5 times larger, so
// there are always at least 4.
function timeTicks(last) {
  const span = Math.max(last, 1e-3);
  let power = Math.pow(10, Math.floor(Math.log10(span / 8)));
  for (;;) {
    for (const multiple of [1, 2, 5]) {
      const step = multiple * power;
      if (Math.floor(span / step + 1e-9) + 1 <= 8) return { step, values: ticksOf(span, step) };
    }
    power *= 10;
  }
}

function ticksOf(span, step) {
  const count = Math.floor(span / step + 1e-9) + 1;
  return Array.from({ length: count }, (_, i) => i * step);
}

// A tick's label shows as many decimals as its step needs (0.2 s, 0.05 s), no more.
function tickLabel(value, step) {
  return formatSeconds(value, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

// Runs of consecutive frames with a face. The line is drawn run by run so that it breaks where no
// face was found: a straight segment across those frames would show scores nobody measured.
function runsWithFace(frames) { return runsWhere(frames, (f) => f.p_fake !== null); }
function runsWithoutFace(frames) { return runsWhere(frames, (f) => f.p_fake === null); }

function runsWhere(frames, keep) {
  const runs = [];
  let run = [];
  for (const f of frames) {
    if (!keep(f)) { if (run.length) runs.push(run); run = []; } else run.push(f);
  }
  if (run.length) runs.push(run);
  return runs;
}

function chartScales(frames) {
  const { width, height, left, right, top, bottom } = CHART;
  const last = Math.max(...frames.map((f) => f.frame_time_sec), 0.001);
  return {
    last,
    x: (t) => left + ((width - left - right) * t) / last,
    y: (p) => top + (height - top - bottom) * (1 - p),
  };
}

function drawAxes(chart, scale, title = "time in the video") {
  const { width, height, left, right } = CHART;
  chart.append(svg("line", { class: "x-axis", x1: left, y1: scale.y(0), x2: width - right, y2: scale.y(0), stroke: "#888" }));
  chart.append(svg("line", { class: "y-axis", x1: left, y1: scale.y(0), x2: left, y2: scale.y(1), stroke: "#888" }));
  const axis = svg("text", { x: (width + left) / 2, y: height - 4, "text-anchor": "middle", "font-size": 12 });
  axis.textContent = title;
  chart.append(axis);
}

function drawTimeTicks(chart, scale) {
  const { step, values } = timeTicks(scale.last);
  for (const t of values) {
    const x = scale.x(t);
    chart.append(svg("line", { class: "x-tick", x1: x, x2: x, y1: scale.y(0), y2: scale.y(0) + 5, stroke: "#888" }));
    const label = svg("text", { class: "x-tick-label", x, y: scale.y(0) + 18, "text-anchor": "middle", "font-size": 11 });
    label.textContent = tickLabel(t, step);
    chart.append(label);
  }
}

function drawProbabilityTicks(chart, scale) {
  for (const p of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "y-tick", x1: CHART.left - 5, x2: CHART.left, y1: scale.y(p), y2: scale.y(p), stroke: "#888" }));
    const label = svg("text", { class: "y-tick-label", x: CHART.left - 8, y: scale.y(p) + 4, "text-anchor": "end", "font-size": 11 });
    label.textContent = String(p);
    chart.append(label);
  }
}

function drawThreshold(chart, scale, threshold) {
  const { width, right, left } = CHART;
  chart.append(svg("line", { class: "threshold", x1: left, x2: width - right, y1: scale.y(threshold), y2: scale.y(threshold), stroke: "#b00020", "stroke-dasharray": "6 4" }));
  const label = svg("text", { class: "threshold-label", x: width - right - 4, y: scale.y(threshold) - 4, "text-anchor": "end", "font-size": 11, fill: "#b00020" });
  label.textContent = `threshold ${threshold}`;
  chart.append(label);
}

function drawLine(chart, scale, frames) {
  for (const run of runsWithFace(frames)) {
    if (run.length < 2) continue; // a lone scored frame is its dot alone
    const points = run.map((f) => `${scale.x(f.frame_time_sec)},${scale.y(f.p_fake)}`).join(" ");
    chart.append(svg("polyline", { class: "p-fake-line", points, fill: "none", stroke: "#0a66c2", "stroke-width": 1.5 }));
  }
}

function frameTooltip(f) {
  const what = f.p_fake === null ? labelInWords("NO_FACE") : `P(FAKE) ${f.p_fake.toFixed(4)}`;
  return `frame ${f.frame_index} at ${formatSeconds(f.frame_time_sec)}: ${what}`;
}

function drawPoints(chart, scale, frames, threshold) {
  for (const f of frames) {
    const x = scale.x(f.frame_time_sec);
    const point = f.p_fake === null
      ? svg("path", { class: "frame-point no-face", d: `M${x - 4},${scale.y(0) - 4} l8,8 m0,-8 l-8,8`, stroke: "#999", "stroke-width": 2 })
      : svg("circle", { class: "frame-point", cx: x, cy: scale.y(f.p_fake), r: 4, fill: f.p_fake >= threshold ? "#b00020" : "#1b7f3b" });
    const title = svg("title", {});
    title.textContent = frameTooltip(f);
    point.append(title);
    chart.append(point);
  }
}

function drawChart(answer) {
  const { width, height } = CHART;
  const frames = answer.frames;
  const scale = chartScales(frames);
  const threshold = answer.verdicts[answer.verdict_rule].threshold;
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "P(FAKE) per frame" });
  drawAxes(chart, scale);
  drawTimeTicks(chart, scale);
  drawProbabilityTicks(chart, scale);
  drawThreshold(chart, scale, threshold);
  drawLine(chart, scale, frames);
  drawPoints(chart, scale, frames, threshold);
  $("chart").replaceChildren(chart);
}

// ---- The timeline of a job: the same box, x the time in the whole video (m:ss), y P(FAKE).

function timelineScales(timeline) {
  const { width, height, left, right, top, bottom } = CHART;
  const frames = timeline.frames;
  const last = Math.max(timeline.duration_s || 0, frames.length ? frames[frames.length - 1].t : 0, 0.001);
  return {
    last,
    x: (t) => left + ((width - left - right) * t) / last,
    y: (p) => top + (height - top - bottom) * (1 - p),
  };
}

// Clock steps (1 s … 3 h): the smallest that gives at most 8 ticks.
const CLOCK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800];
function clockTicks(last) {
  const step = CLOCK_STEPS.find((s) => Math.floor(last / s + 1e-9) + 1 <= 8) || CLOCK_STEPS[CLOCK_STEPS.length - 1];
  return ticksOf(last, step);
}

function drawClockTicks(chart, scale) {
  for (const t of clockTicks(scale.last)) {
    const x = scale.x(t);
    chart.append(svg("line", { class: "x-tick", x1: x, x2: x, y1: scale.y(0), y2: scale.y(0) + 5, stroke: "#888" }));
    const label = svg("text", { class: "x-tick-label", x, y: scale.y(0) + 18, "text-anchor": "middle", "font-size": 11 });
    label.textContent = clock(t);
    chart.append(label);
  }
}

function stretchWords(f) { return `${clock(f.start_s)}–${clock(f.end_s)}`; }

function drawFlagged(chart, scale, flagged) {
  for (const f of flagged) {
    const rect = svg("rect", {
      class: "flagged", x: scale.x(f.start_s), y: scale.y(1), width: Math.max(1, scale.x(f.end_s) - scale.x(f.start_s)),
      height: scale.y(0) - scale.y(1), fill: "#b00020", "fill-opacity": 0.15,
    });
    const title = svg("title", {});
    title.textContent = `Above the threshold: ${stretchWords(f)}, max P(FAKE) ${f.max_p_fake.toFixed(2)} (${f.windows} windows)`;
    rect.append(title);
    chart.append(rect);
  }
}

// Each sample's own P(FAKE): a line broken where no face was found, those stretches grey on the axis.
function drawSamples(chart, scale, timeline) {
  const half = timeline.fps ? 0.5 / timeline.fps : 0;
  for (const run of runsWithFace(timeline.frames)) {
    if (run.length === 1) {
      chart.append(svg("circle", { class: "sample-point", cx: scale.x(run[0].t), cy: scale.y(run[0].p_fake), r: 2, fill: "#0a66c2" }));
      continue;
    }
    const points = run.map((f) => `${scale.x(f.t)},${scale.y(f.p_fake)}`).join(" ");
    chart.append(svg("polyline", { class: "sample-line", points, fill: "none", stroke: "#0a66c2", "stroke-width": 1 }));
  }
  for (const gap of runsWithoutFace(timeline.frames)) {
    const from = Math.max(0, gap[0].t - half);
    const to = Math.min(scale.last, gap[gap.length - 1].t + half);
    const rect = svg("rect", { class: "no-face", x: scale.x(from), y: scale.y(0) - 4, width: Math.max(1, scale.x(to) - scale.x(from)), height: 4, fill: "#999" });
    const title = svg("title", {});
    title.textContent = `${labelInWords("NO_FACE")}: ${clock(from)}–${clock(to)}`;
    rect.append(title);
    chart.append(rect);
  }
}

// Each window's P(FAKE) (the temporal model over its samples) as a step: windows overlap, so each
// step spans from halfway to the previous window's centre to halfway to the next one's.
function drawWindows(chart, scale, segments) {
  const centres = segments.map((s) => (s.start_s + s.end_s) / 2);
  let previous = null;
  segments.forEach((s, i) => {
    if (s.p_fake === null) { previous = null; return; }
    const from = i ? (centres[i - 1] + centres[i]) / 2 : s.start_s;
    const to = i < segments.length - 1 ? (centres[i] + centres[i + 1]) / 2 : s.end_s;
    const y = scale.y(s.p_fake);
    if (previous !== null) chart.append(svg("line", { class: "segment-riser", x1: scale.x(from), x2: scale.x(from), y1: previous, y2: y, stroke: "#333", "stroke-width": 1 }));
    const step = svg("line", { class: "segment", x1: scale.x(from), x2: scale.x(to), y1: y, y2: y, stroke: "#333", "stroke-width": 2.5 });
    const title = svg("title", {});
    title.textContent = `window ${clock(s.start_s)}–${clock(s.end_s)}: P(FAKE) ${s.p_fake.toFixed(4)} (${s.faces} samples with a face)`;
    step.append(title);
    chart.append(step);
    previous = y;
  });
}

function flaggedWords(timeline, complete) {
  if (!timeline.flagged.length) return [`No stretch above the threshold${complete ? "" : " so far"}`];
  return timeline.flagged.map((f) => `Above the threshold: ${stretchWords(f)} (max P(FAKE) ${f.max_p_fake.toFixed(2)})`);
}

function timelineSummary(timeline, complete) {
  const frames = timeline.frames;
  const scanned = complete || !frames.length ? "" : `, ${clock(frames[frames.length - 1].t)} scanned so far`;
  const stretches = timeline.flagged.length
    ? `${timeline.flagged.length} stretch${timeline.flagged.length > 1 ? "es" : ""} above the threshold ${timeline.threshold}: ${timeline.flagged.map(stretchWords).join(", ")}`
    : `no stretch above the threshold ${timeline.threshold}`;
  return `P(FAKE) over the video (${clock(timeline.duration_s)} long${scanned}): ${stretches}`;
}

function drawTimeline(timeline, complete) {
  const { width, height } = CHART;
  const scale = timelineScales(timeline);
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": timelineSummary(timeline, complete) });
  drawFlagged(chart, scale, timeline.flagged); // first: under the lines
  drawAxes(chart, scale, "time in the video (m:ss)");
  drawClockTicks(chart, scale);
  drawProbabilityTicks(chart, scale);
  drawThreshold(chart, scale, timeline.threshold);
  drawSamples(chart, scale, timeline);
  drawWindows(chart, scale, timeline.segments);
  $("timeline").replaceChildren(chart);
  $("flagged").replaceChildren(...flaggedWords(timeline, complete).map((words) => element("li", words)));
  $("timeline-part").hidden = false;
}

function frameCaption(f) {
  const score = f.p_fake === null ? "" : ` ${f.p_fake.toFixed(3)}`;
  return `frame ${f.frame_index} · ${formatSeconds(f.frame_time_sec)} · ${labelInWords(f.label)}${score}`;
}

function drawFrames(answer, file) {
  // The frames are drawn from the uploaded file itself, in the browser (nothing is kept on the server).
  const holder = $("frames");
  holder.replaceChildren();
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  video.src = URL.createObjectURL(file);
  const faces = Object.fromEntries(answer.cropped_faces.map((c) => [c.frame_index, c]));
  const shown = answer.frames_for_display;
  const figures = shown.map((f) => {
    const canvas = element("canvas", undefined, { class: "display-frame", "data-frame": f.frame_index });
    const caption = element("figcaption", frameCaption(f));
    const figure = element("figure");
    figure.append(canvas, caption);
    holder.append(figure);
    return { f, canvas };
  });
  const drawBox = (canvas, box, scale) => {
    const context = canvas.getContext("2d");
    context.strokeStyle = "#ffcc00";
    context.lineWidth = Math.max(2, 3 / scale);
    context.strokeRect(box[0], box[1], box[2], box[3]);
  };
  const placeholder = () => {
    for (const { f, canvas } of figures) {
      canvas.width = answer.metadata.width; canvas.height = answer.metadata.height;
      const context = canvas.getContext("2d");
      context.fillStyle = "#ddd"; context.fillRect(0, 0, canvas.width, canvas.height);
      if (faces[f.frame_index]) drawBox(canvas, faces[f.frame_index].box, 1);
    }
  };
  video.onerror = placeholder; // a codec this browser lacks: boxes on a blank frame
  video.onloadeddata = async () => {
    for (const { f, canvas } of figures) {
      await new Promise((done) => { video.onseeked = done; video.currentTime = Math.min(f.frame_time_sec, video.duration || 0); });
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      canvas.getContext("2d").drawImage(video, 0, 0);
      if (faces[f.frame_index]) drawBox(canvas, faces[f.frame_index].box, canvas.clientWidth / canvas.width || 1);
    }
    URL.revokeObjectURL(video.src);
  };
}

async function post(route, fields) {
  const form = new FormData();
  form.append("file", current.file);
  for (const [k, v] of Object.entries(fields || {})) form.append(k, v);
  const response = await fetch(route, { method: "POST", body: form, headers: headers() });
  let body = null;
  try { body = await response.clone().json(); } catch (e) { body = null; }
  return { response, body };
}

async function downloadCsv() {
  const { response, body } = await post("/predict_csv/?format=csv");
  if (!response.ok) { showError(explain(response.status, body, response.headers.get("Retry-After"))); return; }
  const link = element("a", undefined, { download: current.file.name.replace(/\.[^.]*$/, "") + "_frames.csv" });
  link.href = URL.createObjectURL(await response.blob());
  document.body.append(link);
  link.click();
  link.remove();
}

async function sign() {
  const { response, body } = await post("/integrity/sign");
  if (!response.ok) { $("integrity").textContent = explain(response.status, body); return; }
  $("signature").value = body.attestation;
  $("integrity").textContent = `Signed at ${body.signed_at} with key ${body.key_id.slice(0, 16)}…; the attestation is in the box.`;
}

async function verify() {
  // an attestation (a JWS: it has dots) or, pasted from elsewhere, an older base64 signature (never has one)
  const value = $("signature").value.trim();
  const field = value.includes(".") ? { attestation: value } : { signature_base64: value };
  const { response, body } = await post("/integrity/verify", field);
  if (!response.ok) { $("integrity").textContent = explain(response.status, body); return; }
  $("integrity").textContent = body.valid
    ? `Valid: this file is the one signed${body.signed_at ? " at " + body.signed_at : ""}.`
    : `Not valid: ${body.error}`;
}

async function loadRecent() {
  const response = await fetch("/analyses?per_page=10", { headers: headers() });
  const body = response.ok ? await response.json() : { items: [] };
  $("recent").querySelector("tbody").replaceChildren(...body.items.map((item) => {
    const csv = element("a", "CSV", { href: `/analyses/${item.id}.csv` });
    const result = labelInWords(item.result) + (item.untrained_demo ? " (demo)" : ""); // a demo verdict is no verdict
    // the model that answered: verdicts of different checkpoints or precisions do not compare
    const checkpoint = item.untrained_demo ? "untrained demo" : item.checkpoint_sha256.slice(0, 12);
    const model = element("span", `${checkpoint} ${item.precision}`, { class: "model", title: item.checkpoint_sha256 });
    return row([item.created_at.slice(0, 19).replace("T", " "), item.filename, model, result, item.p_fake.toFixed(4), csv]);
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem("deepfake-api-key") || "";
  $("api-key").addEventListener("change", () => { localStorage.setItem("deepfake-api-key", $("api-key").value.trim()); loadRecent(); });
  $("file").addEventListener("change", (event) => { if (event.target.files.length) analyze(event.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) analyze(event.dataTransfer.files[0]);
  });
  $("download-csv").addEventListener("click", downloadCsv);
  $("sign").addEventListener("click", sign);
  $("verify").addEventListener("click", verify);
  $("job-cancel").addEventListener("click", cancelJob);
  window.addEventListener("pagehide", stopJob); // no polls from a page that is gone
  fetch("/readyz").then((r) => r.ok ? r.json() : null).then((ready) => {
    if (ready && ready.model && ready.model.untrained_demo) $("demo-banner").hidden = false;
  });
  loadRecent();
});
