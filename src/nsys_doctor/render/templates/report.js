'use strict';
(function () {
const D = JSON.parse(document.getElementById('nsd-data').textContent);
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = String(text);
  if (cls) e.className = cls; return e; }
const SVGNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) { const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); if (text != null) e.textContent = String(text); return e; }
function fmtMs(ns) { const ms = ns / 1e6; return Math.abs(ms) >= 100 ? ms.toFixed(1) + ' ms' :
  Math.abs(ms) >= 1 ? ms.toFixed(2) + ' ms' : (ns / 1e3).toFixed(1) + ' us'; }
const COLORS = {kernel: '#3f7fd0', memcpy: '#2ca05a', memset: '#8e6bbf', graph: '#1b4f8f', cuda_api: '#e0913a',
  osrt: '#c8453b', nvtx: '#7c9a3c', mixed: '#8a8f99'};
const PARTS = [['compute_ms', 'compute', '#3f7fd0'], ['copy_ms', 'copies', '#2ca05a'],
  ['other_gpu_ms', 'other GPU work', '#a7b6cc'], ['idle_ms', 'GPU idle', '#e8a33d']];

// ---------------------------------------------------------------- header, summary, notes
const prof = D.profile || {}, req = D.requests || {};
function gpuList(names) {   // "8x NVIDIA H100" for an 8-GPU host, not the name eight times
  const n = new Map(); names.forEach(g => n.set(String(g), (n.get(String(g)) || 0) + 1));
  return Array.from(n, ([g, c]) => (c > 1 ? c + 'x ' : '') + g).join(', '); }
$('profile').textContent = [prof.path, prof.format, prof.nsys_version && ('nsys ' + prof.nsys_version),
  gpuList(prof.gpus || [])].filter(Boolean).join(' \u00b7 ');
$('verdict').textContent = D.verdict || 'No verdict.';
const lat = req.latency_ms || {};
// queueing, service time and what bounds the run (absent from reports saved before they were measured)
function loadRows(r) {
  const pq = (o) => o ? [o.p50, o.p90, o.p99, o.max].map(v => v == null ? '?' : v).join(' / ') + ' ms' : null;
  const ev = r.load_evidence || {};
  return r.load ? [['Load', r.load + ', bound by ' + r.bound_by + ' (queueing ' + ev.queue_pct_of_latency +
    '% of latency, GPU busy ' + ev.gpu_busy_pct_of_span + '% of the run)'],
    ['Request interval', r.interval_ms + ' ms (' + r.throughput_per_s + ' requests/s)'],
    ['Queued p50 / p90 / p99 / max', pq(r.queue_ms)], ['Service p50 / p90 / p99 / max', pq(r.service_ms)]] : [];
}
const summary = el('table', null, 'kv');
[['Request range', (req.range || '?') + (req.inferred ? ' (inferred, no NVTX)' : '')],
 ['Chosen because', req.chosen_because], ['Requests measured', (req.count ?? '?') + ' of ' + (req.total ?? '?') +
  (req.warmup ? ' (' + req.warmup + ' warm-up: ' + (req.warmup_reason || '') + ')' : '')],
 ['Latency p50 / p90 / p99 / max', [lat.p50, lat.p90, lat.p99, lat.max].map(v => v == null ? '?' : v).join(' / ') +
  ' ms'], ['GPU busy', req.gpu_busy_pct != null ? req.gpu_busy_pct + "% of a request's latency on average (own work " +
  req.own_gpu_busy_pct + '%)' : null]]
  .concat(loadRows(req))
  .forEach(([k, v]) => { if (v == null) return; const tr = el('tr'); tr.append(el('td', k), el('td', v));
    summary.append(tr); });
$('summary').append(summary);
const notes = [].concat(D.notes || [], Object.entries(prof.absent || {}).map(([k, v]) => k + ': ' + v));
notes.forEach(n => $('notes').append(el('li', n)));
$('notes-section').hidden = !notes.length;   // no heading over nothing

// ---------------------------------------------------------------- histogram and breakdown (SVG)
const pr = D.per_request || {};
const measured = (pr.latency_ms || []).map((v, i) => i).filter(i => !(pr.warmup || [])[i]);
function histogram() {
  // T: a band above the bars for the p50/p99 labels, each on its own row, so a label never covers a bar or the
  // other label however close the two percentiles are
  const W = 460, H = 224, L = 46, B = 34, T = 40, R = 14, vals = measured.map(i => pr.latency_ms[i]);
  const s = svg('svg', {width: W, height: H, role: 'img'}); $('hist').append(s);
  if (!vals.length) { s.append(svg('text', {x: 10, y: 20}, 'no measured requests')); return; }
  const lo = Math.min(...vals), hi = Math.max(...vals), nb = Math.min(40, Math.max(5, Math.ceil(Math.sqrt(vals.length))));
  const w = (hi - lo) / nb || 1, bins = new Array(nb).fill(0);
  vals.forEach(v => bins[Math.min(nb - 1, Math.floor((v - lo) / w))]++);
  const top = Math.max(...bins), x = v => L + (v - lo) / (w * nb) * (W - L - R), y = c => H - B - c / top * (H - B - T);
  bins.forEach((c, i) => { const r = svg('rect', {x: x(lo + i * w) + 0.5, y: y(c), width: Math.max(1, x(lo + w) - L - 1),
    height: H - B - y(c), fill: '#3f7fd0'}); r.append(svg('title', {}, c + ' requests, ' + (lo + i * w).toFixed(2) + '-' +
    (lo + (i + 1) * w).toFixed(2) + ' ms')); s.append(r); });
  s.append(svg('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: '#889'}));
  s.append(svg('line', {x1: L, x2: L, y1: T, y2: H - B, stroke: '#889'}));
  // x axis: latency with its unit; y axis: a count of requests, said so, so "34" is not read as a time
  [[lo, 'start'], [(lo + hi) / 2, 'middle'], [hi, 'end']].forEach(([v, anchor]) => s.append(svg('text',
    {x: x(v), y: H - B + 14, 'font-size': 11, 'text-anchor': anchor}, v.toFixed(1) + ' ms')));
  s.append(svg('text', {x: (L + W - R) / 2, y: H - 4, 'font-size': 11, fill: '#556', 'text-anchor': 'middle'},
    'end-to-end latency'));
  [[0, H - B], [top, T]].forEach(([c, yy]) => s.append(svg('text', {x: L - 5, y: yy + 4, 'font-size': 11,
    'text-anchor': 'end'}, c)));
  s.append(svg('text', {x: 12, y: (T + H - B) / 2, 'font-size': 11, fill: '#556', 'text-anchor': 'middle',
    transform: 'rotate(-90 12 ' + (T + H - B) / 2 + ')'}, 'requests'));
  const sorted = vals.slice().sort((a, b) => a - b), pct = p => sorted[Math.min(sorted.length - 1,
    Math.floor(p / 100 * (sorted.length - 1) + 0.5))];
  const CH = 6.3;   // px per character of the 11px labels, for the side with room
  // p99 on the top row, its line through the p50 row to the right of the p50 line; the p50 label reads leftwards
  // from its line when there is room, so it never crosses the p99 line
  [['p99', lat.p99 ?? pct(99), '#c0392b', 12], ['p50', lat.p50 ?? pct(50), '#1b7f3b', 27]].forEach(([n, v, c, row]) => {
    const text = n + ' ' + v.toFixed(2) + ' ms', px = x(v), need = text.length * CH + 4;
    s.append(svg('line', {x1: px, x2: px, y1: row + 3, y2: H - B, stroke: c, 'stroke-width': 2, 'stroke-dasharray': '4 3'}));
    const left = n === 'p50' ? px - need >= 0 : px + need > W;
    s.append(svg('text', {x: px + (left ? -4 : 4), y: row, 'font-size': 11, fill: c, 'text-anchor': left ? 'end' : 'start'},
      text));
  });
}
function breakdown() {
  const W = 620, H = 200, L = 40, B = 20, idx = measured;
  const s = svg('svg', {width: W, height: H, role: 'img'}); $('breakdown').append(s);
  if (!idx.length) return;
  const groups = Math.min(idx.length, 300), per = idx.length / groups, bars = [];
  for (let g = 0; g < groups; g++) {   // many requests: each bar is the mean of consecutive ones
    const part = idx.slice(Math.floor(g * per), Math.floor((g + 1) * per));
    bars.push({first: part[0], n: part.length, v: PARTS.map(([k]) => part.reduce((a, i) => a + ((pr[k] || [])[i] || 0), 0)
      / part.length)});
  }
  const top = Math.max(...bars.map(b => b.v.reduce((a, c) => a + c, 0))) || 1, bw = (W - L - 10) / groups;
  bars.forEach((b, g) => { let y0 = H - B; b.v.forEach((v, k) => { const h = v / top * (H - B - 10);
    const r = svg('rect', {x: L + g * bw, y: y0 - h, width: Math.max(bw - (bw > 3 ? 1 : 0), 0.5), height: h,
      fill: PARTS[k][2]}); r.append(svg('title', {}, 'request #' + b.first + (b.n > 1 ? ' (+' + (b.n - 1) + ', mean)' : '')
      + ': ' + PARTS.map(([, n], j) => n + ' ' + b.v[j].toFixed(2)).join(', ') + ' ms')); s.append(r); y0 -= h; }); });
  s.append(svg('text', {x: 4, y: 12, 'font-size': 11}, top.toFixed(1) + ' ms'));
  s.append(svg('text', {x: L, y: H - 5, 'font-size': 11}, 'requests in order \u2192'));
  PARTS.forEach(([, n, c]) => { const it = el('span', null, 'legend-item'); const sw = el('span', null, 'sw');
    sw.style.background = c; it.append(sw, document.createTextNode(n)); $('legend').append(it); });
}
histogram(); breakdown();

// ---------------------------------------------------------------- findings
const TL = D.timeline || {}, EX = TL.excerpts || [];
const findings = D.findings || [];
if (!findings.length) $('findings').append(el('p', 'No findings.', 'muted'));
findings.forEach((f, fi) => {
  const box = el('div', null, 'finding'); box.id = 'finding-' + fi;
  const h = el('h3'); h.append(el('span', f.severity, 'sev sev-' + (['high', 'medium', 'low'].includes(f.severity) ?
    f.severity : 'low')), document.createTextNode((fi + 1) + '. ' + f.title));
  box.append(h, el('div', 'Impact: about ' + Number(f.impact_ms).toFixed(2) + ' ms per request (' +
    Number(f.impact_pct).toFixed(0) + (f.impact_basis === 'interval' ? '% of the request interval). ' :
    '% of latency). ') + (f.estimate || ''), 'muted'));
  box.append(el('p', 'Fix: ' + (f.fix || '')), el('p', 'Why: ' + (f.why || ''), 'muted'));
  const ev = f.evidence || {}, kv = el('table', null, 'kv');
  Object.entries(ev.numbers || {}).forEach(([k, v]) => { const tr = el('tr');
    tr.append(el('td', k), el('td', typeof v === 'object' ? JSON.stringify(v) : v)); kv.append(tr); });
  box.append(kv);
  (ev.code || []).forEach(c => box.append(el('div', 'code: ' + [c.function, c.module, c.share_pct != null ?
    c.share_pct + '%' : null].filter(x => x != null).join(' \u00b7 '), 'muted')));
  (ev.notes || []).forEach(n => box.append(el('div', 'note: ' + n, 'muted')));
  const ul = el('ul', null, 'inst-list');
  (ev.worst || []).forEach((inst, ii) => { const li = el('li'); const a = el('a', inst.what || ('instance ' + (ii + 1)),
    'inst'); a.id = 'inst-' + fi + '-' + ii; a.tabIndex = 0;
    a.addEventListener('click', () => showInstance(fi, ii));
    li.append(a, document.createTextNode(' \u2014 ' + fmtMs(inst.end_ns - inst.start_ns) +
      (inst.request != null ? ', request #' + inst.request : '') + (inst.thread ? ', ' + inst.thread : '') +
      (inst.code ? ', ' + inst.code : ''))); ul.append(li); });
  box.append(ul); $('findings').append(box);
});

// ---------------------------------------------------------------- timeline
const cv = $('timeline'), ctx = cv.getContext('2d'), tip = $('tip');
const LABEL = 230, LANE = 18, METRIC = 38, AXIS = 22;
const state = {ex: null, view: [0, 1], selected: null, drawn: 0};
function prepare(ex) {   // per lane: start/end arrays (relative to the excerpt) and running max of ends
  if (ex._lanes) return ex;
  const t0 = ex.start_ns, lanes = ex.lanes.map(l => ({info: l, ev: []}));
  ex.events.forEach(e => { if (lanes[e[3]]) lanes[e[3]].ev.push(e); });
  lanes.forEach(l => { l.ev.sort((a, b) => a[0] - b[0]); const n = l.ev.length;
    l.s = new Float64Array(n); l.e = new Float64Array(n); l.maxe = new Float64Array(n); let m = -Infinity;
    l.ev.forEach((e, i) => { l.s[i] = e[0] - t0; l.e[i] = e[1] - t0; m = Math.max(m, l.e[i]); l.maxe[i] = m; }); });
  ex._lanes = lanes; ex._metrics = (ex.metrics || []).map(m => ({name: m.name, unit: m.unit,
    t: m.points.map(p => p[0] - t0), v: m.points.map(p => p[1])}));
  return ex;
}
function firstVisible(l, t) { let lo = 0, hi = l.maxe.length; while (lo < hi) { const mid = (lo + hi) >> 1;
  if (l.maxe[mid] < t) lo = mid + 1; else hi = mid; } return lo; }
function setExcerpt(i, keepView) {
  state.ex = prepare(EX[i]); state.exIndex = i;
  if (!keepView) state.view = [0, state.ex.end_ns - state.ex.start_ns];
  Array.from($('excerpts').children).forEach((b, j) => b.classList.toggle('on', j === i));
  resize();
}
function resize() {
  if (!state.ex) return;
  const dpr = window.devicePixelRatio || 1, w = cv.clientWidth || 1000;
  const h = AXIS + state.ex._lanes.length * LANE + state.ex._metrics.length * METRIC + 6;
  cv.style.height = h + 'px'; cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0); draw();
}
function xOf(t) { const [a, b] = state.view; return LABEL + (t - a) / (b - a) * (cv.clientWidth - LABEL); }
function tOf(x) { const [a, b] = state.view; return a + (x - LABEL) / (cv.clientWidth - LABEL) * (b - a); }
function draw() {
  const ex = state.ex, W = cv.clientWidth, H = cv.clientHeight, [v0, v1] = state.view, t0 = ex.start_ns;
  const rel = (ex.request_start_ns != null ? ex.request_start_ns : ex.start_ns) - t0;
  ctx.clearRect(0, 0, W, H); ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, W, H);
  ctx.font = '11px system-ui,sans-serif'; ctx.textBaseline = 'middle';
  if (ex.request_start_ns != null) {   // the request itself
    const a = Math.max(LABEL, xOf(ex.request_start_ns - t0)), b = Math.min(W, xOf(ex.request_end_ns - t0));
    if (b > a) { ctx.fillStyle = '#f1f5fc'; ctx.fillRect(a, AXIS, b - a, H - AXIS); }
  }
  const step = niceStep((v1 - v0) / Math.max(2, (W - LABEL) / 110));   // axis: ms from request start
  ctx.fillStyle = '#445'; ctx.strokeStyle = '#e4e6ee';
  for (let t = Math.ceil((v0 - rel) / step) * step + rel; t <= v1; t += step) {
    const x = xOf(t); ctx.beginPath(); ctx.moveTo(x, AXIS - 4); ctx.lineTo(x, H); ctx.stroke();
    ctx.fillText(fmtMs(t - rel), x + 2, 9);
  }
  let y = AXIS, drawn = 0;
  ex._lanes.forEach((l, li) => {
    if (li % 2) { ctx.fillStyle = '#00000008'; ctx.fillRect(LABEL, y, W - LABEL, LANE); }
    let i = firstVisible(l, v0), runA = -1, runB = -1, runKind = null;
    const flush = () => { if (runA >= 0) { ctx.fillStyle = COLORS[runKind] || COLORS.mixed;
      ctx.fillRect(runA, y + 2, Math.max(runB - runA, 1), LANE - 4); drawn++; } runA = -1; };
    for (; i < l.s.length && l.s[i] <= v1; i++) {
      if (l.e[i] < v0) continue;
      const a = Math.max(LABEL, xOf(l.s[i])), b = Math.min(W, xOf(l.e[i])), kind = l.ev[i][4];
      if (b - a < 2) {   // sub-pixel events: merged per pixel run, drawn once
        if (runA >= 0 && a <= runB + 1 && kind === runKind) { runB = Math.max(runB, b); continue; }
        flush(); runA = a; runB = Math.max(b, a + 1); runKind = kind; continue;
      }
      flush(); ctx.fillStyle = COLORS[kind] || COLORS.mixed; ctx.fillRect(a, y + 2, b - a, LANE - 4); drawn++;
      if (b - a > 40) { ctx.save(); ctx.beginPath(); ctx.rect(a, y, b - a - 2, LANE); ctx.clip();
        ctx.fillStyle = '#fff'; ctx.fillText(l.ev[i][2], a + 3, y + LANE / 2); ctx.restore(); }
    }
    flush(); y += LANE;
  });
  ex._metrics.forEach(m => {
    ctx.strokeStyle = '#dde'; ctx.strokeRect(LABEL, y + 2, W - LABEL, METRIC - 4);
    const top = m.unit === '%' ? 100 : Math.max(1e-9, ...m.v);
    ctx.save(); ctx.beginPath(); ctx.rect(LABEL, y, W - LABEL, METRIC); ctx.clip();
    ctx.beginPath(); ctx.strokeStyle = '#7a4fb5'; let started = false;
    m.t.forEach((t, k) => { if (t < v0 - (v1 - v0) || t > v1 + (v1 - v0)) return;
      const px = xOf(t), py = y + METRIC - 3 - m.v[k] / top * (METRIC - 6);
      if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; } });
    ctx.stroke();
    // the scale (0 and the top of the lane) and the mean of the samples in view, so the line can be read
    const inView = m.v.filter((v, k) => m.t[k] >= v0 && m.t[k] <= v1);
    const mean = inView.length ? inView.reduce((a, b) => a + b, 0) / inView.length : null;
    ctx.fillStyle = '#7a4fb5'; ctx.textAlign = 'right';
    ctx.fillText(fmtVal(top, m.unit), W - 4, y + 9); ctx.fillText(fmtVal(0, m.unit), W - 4, y + METRIC - 9);
    if (mean != null) ctx.fillText('mean ' + fmtVal(mean, m.unit), W - 60, y + 9);
    ctx.textAlign = 'left'; ctx.restore(); y += METRIC;
  });
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, LABEL, H);   // labels over anything drawn left of the lanes
  ctx.fillStyle = '#223'; y = AXIS;
  ex._lanes.forEach(l => { label(l.info.name, y + LANE / 2, l.info.group === 'gpu' ? '#1b4f8f' : '#223'); y += LANE; });
  ex._metrics.forEach(m => { label(m.name, y + METRIC / 2, '#7a4fb5'); y += METRIC; });
  (ex.markers || []).forEach(mk => {   // finding instances
    const a = xOf(mk.start_ns - t0), b = xOf(mk.end_ns - t0); if (b < LABEL || a > W) return;
    const sel = state.selected && state.selected[0] === mk.finding && state.selected[1] === mk.instance;
    const ca = Math.max(LABEL, a), cb = Math.min(W, Math.max(b, a + 2));
    if (sel) {   // the chosen instance: shaded and framed; the others: a bar under the axis and their edges
      ctx.fillStyle = '#ff8c0040'; ctx.fillRect(ca, AXIS, cb - ca, H - AXIS);
      ctx.strokeStyle = '#e05a00'; ctx.lineWidth = 2; ctx.strokeRect(ca, AXIS, cb - ca, H - AXIS - 1); ctx.lineWidth = 1;
    } else {
      ctx.fillStyle = '#ff8c0090'; ctx.fillRect(ca, AXIS, cb - ca, 3); ctx.strokeStyle = '#ffb06090';
      ctx.beginPath(); [a, b].forEach(x => { if (x >= LABEL && x <= W) { ctx.moveTo(x, AXIS); ctx.lineTo(x, H); } });
      ctx.stroke();
    }
    ctx.fillStyle = '#e05a00'; ctx.fillRect(ca, AXIS - 12, 26, 12); ctx.fillStyle = '#fff';
    ctx.fillText('F' + (mk.finding + 1), ca + 3, AXIS - 6);
  });
  state.drawn = drawn;
  $('view-label').textContent = fmtMs(v1 - v0) + ' shown, from ' + fmtMs(v0 - rel) + ' (request start = 0)';
}
function fmtVal(v, unit) { const a = Math.abs(v);
  return (a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, '')) + (unit || ''); }
function label(text, y, color) { ctx.save(); ctx.beginPath(); ctx.rect(0, y - 9, LABEL - 6, 18); ctx.clip();
  ctx.fillStyle = color; ctx.fillText(text, 4, y); ctx.restore(); }
function niceStep(raw) { const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p; return 10 * p; }
function setView(a, b) {
  const full = state.ex.end_ns - state.ex.start_ns, minSpan = 1000;   // 1 us
  let span = Math.min(Math.max(b - a, minSpan), full * 1.5); let mid = (a + b) / 2;
  a = mid - span / 2; b = mid + span / 2;
  const lo = -full * 0.25, hi = full * 1.25; if (a < lo) { b += lo - a; a = lo; } if (b > hi) { a -= b - hi; b = hi; }
  state.view = [a, b]; draw();
}
function zoom(f, at) { const [a, b] = state.view; const c = at == null ? (a + b) / 2 : at;
  setView(c - (c - a) / f, c + (b - c) / f); }
function showInstance(fi, ii) {
  const mk = (TL.markers || []).find(m => m.finding === fi && m.instance === ii);
  if (!mk || !mk.excerpts || !mk.excerpts.length) { $('detail').textContent = 'This instance is outside the timeline excerpts.';
    return false; }
  const i = EX.findIndex(e => e.id === mk.excerpts[0]); state.selected = [fi, ii];
  setExcerpt(i, true);
  const t0 = state.ex.start_ns, d = Math.max(mk.end_ns - mk.start_ns, 2000);
  setView(mk.start_ns - t0 - d * 0.6, mk.end_ns - t0 + d * 0.6);
  $('detail').textContent = 'Finding ' + (fi + 1) + ': ' + (mk.what || '');
  $('timeline-section').scrollIntoView({block: 'start'}); return true;
}
function metricAt(x, y) {   // the GPU metric sample nearest the cursor, on a metric lane
  const ex = state.ex, mi = Math.floor((y - AXIS - ex._lanes.length * LANE) / METRIC);
  if (x < LABEL || mi < 0 || mi >= ex._metrics.length) return null;
  const m = ex._metrics[mi], t = tOf(x); let best = -1;
  m.t.forEach((tt, k) => { if (best < 0 || Math.abs(tt - t) < Math.abs(m.t[best] - t)) best = k; });
  return best < 0 ? null : {m, t: m.t[best], v: m.v[best]};
}
function hit(x, y) {   // the event under the cursor
  const ex = state.ex; let li = Math.floor((y - AXIS) / LANE); if (li < 0 || li >= ex._lanes.length || x < LABEL) return null;
  const l = ex._lanes[li], t = tOf(x), tol = (state.view[1] - state.view[0]) / (cv.clientWidth - LABEL) * 2;
  let best = null;
  for (let i = firstVisible(l, t - tol); i < l.s.length && l.s[i] <= t + tol; i++)
    if (l.e[i] >= t - tol) { best = l.ev[i]; if (l.s[i] <= t && l.e[i] >= t) break; }
  return best && {ev: best, lane: l.info.name};
}
let drag = null;
cv.addEventListener('wheel', e => { e.preventDefault(); const r = cv.getBoundingClientRect();
  zoom(e.deltaY < 0 ? 1.25 : 0.8, tOf(e.clientX - r.left)); }, {passive: false});
cv.addEventListener('mousedown', e => { drag = {x: e.clientX, view: state.view.slice()}; cv.style.cursor = 'grabbing'; });
window.addEventListener('mouseup', () => { drag = null; cv.style.cursor = 'grab'; });
window.addEventListener('mousemove', e => {
  const r = cv.getBoundingClientRect();
  if (drag) { const dt = (e.clientX - drag.x) / (cv.clientWidth - LABEL) * (drag.view[1] - drag.view[0]);
    setView(drag.view[0] - dt, drag.view[1] - dt); tip.hidden = true; return; }
  if (!state.ex || e.target !== cv) { tip.hidden = true; return; }
  const rel = state.ex.request_start_ns != null ? state.ex.request_start_ns : state.ex.start_ns;
  const h = hit(e.clientX - r.left, e.clientY - r.top), mv = h ? null : metricAt(e.clientX - r.left, e.clientY - r.top);
  if (!h && !mv) { tip.hidden = true; return; }
  tip.textContent = h ? h.ev[2] + '\n' + h.ev[4] + ' on ' + h.lane + '\n' + fmtMs(h.ev[1] - h.ev[0]) + ', at ' +
    fmtMs(h.ev[0] - rel) + ' from request start' : mv.m.name + ': ' + fmtVal(mv.v, mv.m.unit) + '\nsample at ' +
    fmtMs(mv.t + state.ex.start_ns - rel) + ' from request start (mean of the samples in that slice)';
  tip.hidden = false; tip.style.left = Math.min(e.clientX - r.left + 12, cv.clientWidth - 300) + 'px';
  tip.style.top = (e.clientY - r.top + 14) + 'px';
});
$('zoom-in').addEventListener('click', () => zoom(2));
$('zoom-out').addEventListener('click', () => zoom(0.5));
$('zoom-reset').addEventListener('click', () => setView(0, state.ex.end_ns - state.ex.start_ns));
window.addEventListener('resize', resize);
EX.forEach((ex, i) => { const b = el('button', ex.title); b.addEventListener('click', () => setExcerpt(i));
  $('excerpts').append(b); });
if (EX.length) setExcerpt(0); else { $('timeline-section').append(el('p', 'No timeline in this report.', 'muted'));
  cv.hidden = true; }
window.nsd = {get view() { return state.ex ? [state.view[0] + state.ex.start_ns, state.view[1] + state.ex.start_ns] : null; },
  get excerpt() { return state.ex ? state.ex.id : null; }, get selected() { return state.selected; },
  get drawn() { return state.drawn; }, zoom, showInstance, setExcerpt, ready: true};
})();
