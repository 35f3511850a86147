// The dashboard's script: reads the public API with the key its user pasted (kept in
// sessionStorage, so it lives as long as the tab) and draws what it reads. Everything is put
// on the page with textContent and SVG attributes, never as HTML, so nothing a transaction or
// an error message contains can run here.

const STORAGE_KEY = 'merchant-normalizer.api-key';
const REFRESH_MS = 10_000;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });

let timer;

/** An element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path) {
  const key = sessionStorage.getItem(STORAGE_KEY);
  const res = await fetch(path, {
    headers: { authorization: `Bearer ${key}`, accept: 'application/json' },
    cache: 'no-store',
  });
  const body = await res.json().catch(() => undefined);
  if (!res.ok) throw new ApiProblem(res.status, body);
  return body;
}

function notice(text, kind = 'info') {
  const p = $('notice');
  p.textContent = text;
  p.className = kind;
  p.hidden = text === '';
}

function showKeyForm(signedIn) {
  $('forget').hidden = !signedIn;
  $('main').hidden = !signedIn;
  if (!signedIn) {
    clearTimeout(timer);
    $('updated').textContent = '';
  }
}

async function refresh() {
  clearTimeout(timer);
  try {
    const [stats, batches, failures, endpoints] = await Promise.all([
      api('/stats?window=1h'),
      api('/batches?limit=10'),
      api('/jobs?status=failed&limit=10'),
      readEndpoints(),
    ]);
    renderCounts(stats);
    renderThroughput(stats);
    renderLatency(stats);
    renderBatches(batches.batches);
    renderFailures(failures.jobs);
    renderEndpoints(endpoints);
    notice('');
    $('updated').textContent = `Updated ${dateTime.format(new Date(stats.to))}`;
    timer = setTimeout(refresh, REFRESH_MS);
  } catch (err) {
    if (err instanceof ApiProblem && err.status === 401) {
      sessionStorage.removeItem(STORAGE_KEY);
      showKeyForm(false);
      notice(`The key was refused (401): ${err.message} Paste a valid key.`, 'error');
      return;
    }
    notice(`Could not read the API: ${err.message}. Trying again shortly.`, 'error');
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

function renderCounts(stats) {
  const c = stats.counts;
  const ms = (v) => (v === null ? '–' : v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`);
  const tiles = [
    ['pending', 'Pending', number.format(c.pending), 'now'],
    ['running', 'Running', number.format(c.running), 'now'],
    ['succeeded', 'Succeeded', number.format(c.succeeded), 'last hour'],
    ['failed', 'Failed', number.format(c.failed), 'last hour'],
    ['canceled', 'Canceled', number.format(c.canceled), 'last hour'],
    ['p50', 'Latency p50', ms(stats.latency_ms.p50), 'last hour'],
    ['p95', 'Latency p95', ms(stats.latency_ms.p95), 'last hour'],
  ];
  $('counts').replaceChildren(
    ...tiles.map(([name, label, value, when]) =>
      el(
        'div',
        { class: `tile ${name}`, 'data-count': name },
        el('dt', {}, label, el('small', {}, when)),
        el('dd', {}, value),
      ),
    ),
  );
}

const W = 600;
const H = 160;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };

/** An SVG with a y axis from 0 to `max` (labelled with `format`) and time labels below. */
function frame(series, max, format) {
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const bottom = H - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = bottom - f * (bottom - PAD.top);
    svg.append(svgEl('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid' }));
    svg.append(svgEl('text', { x: PAD.left - 6, y: y + 4, class: 'axis end' }, format(max * f)));
  }
  const first = series[0];
  const last = series.at(-1);
  if (first && last) {
    svg.append(
      svgEl('text', { x: PAD.left, y: H - 6, class: 'axis' }, clock.format(new Date(first.start))),
      svgEl(
        'text',
        { x: W - PAD.right, y: H - 6, class: 'axis end' },
        clock.format(new Date(last.start)),
      ),
    );
  }
  return svg;
}

function renderThroughput(stats) {
  const series = stats.series;
  const max = Math.max(1, ...series.map((b) => b.succeeded + b.failed + b.canceled));
  const top = niceCeiling(max);
  const svg = frame(series, top, (v) => number.format(Math.round(v)));
  const bottom = H - PAD.bottom;
  const scale = (bottom - PAD.top) / top;
  const step = (W - PAD.left - PAD.right) / Math.max(1, series.length);
  series.forEach((b, i) => {
    let y = bottom;
    const x = PAD.left + i * step + step * 0.1;
    for (const [kind, n] of [
      ['ok', b.succeeded],
      ['bad', b.failed],
      ['muted', b.canceled],
    ]) {
      if (n === 0) continue;
      const h = n * scale;
      y -= h;
      svg.append(
        svgEl(
          'rect',
          { x, y, width: step * 0.8, height: h, class: `bar ${kind}`, 'data-count': n },
          svgEl('title', {}, `${clock.format(new Date(b.start))}: ${n} ${label(kind)}`),
        ),
      );
    }
  });
  svg.setAttribute('aria-label', `Jobs finished per minute; at most ${max} in one minute`);
  $('throughput').replaceChildren(svg);
}

const label = (kind) => ({ ok: 'succeeded', bad: 'failed', muted: 'canceled' })[kind];

function renderLatency(stats) {
  const series = stats.series;
  const values = series
    .flatMap((b) => [b.latency_ms.p50, b.latency_ms.p95])
    .filter((v) => v !== null);
  const top = niceCeiling(Math.max(1, ...values));
  const seconds = (v) =>
    top >= 2000 ? `${(v / 1000).toFixed(v < 10_000 ? 1 : 0)} s` : `${Math.round(v)} ms`;
  const svg = frame(series, top, seconds);
  const bottom = H - PAD.bottom;
  const step = (W - PAD.left - PAD.right) / Math.max(1, series.length);
  for (const [name, pick] of [
    ['p95', (b) => b.latency_ms.p95],
    ['p50', (b) => b.latency_ms.p50],
  ]) {
    // One path; a minute without finished jobs breaks the line.
    let d = '';
    let pen = 'M';
    series.forEach((b, i) => {
      const v = pick(b);
      if (v === null) {
        pen = 'M';
        return;
      }
      const x = PAD.left + i * step + step / 2;
      const y = bottom - (v / top) * (bottom - PAD.top);
      d += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
      if (pen === 'M') d += `h0.01 `; // a lone point still shows (round caps)
      pen = 'L';
    });
    if (d !== '') svg.append(svgEl('path', { d: d.trim(), class: `line ${name}` }));
  }
  svg.setAttribute('aria-label', 'Time from submit to result per minute, p50 and p95');
  $('latency').replaceChildren(svg);
}

/** 1, 2 or 5 times a power of ten, at least `n`. */
function niceCeiling(n) {
  const power = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((m) => m * power).find((c) => c >= n) ?? n;
}

function renderBatches(batches) {
  const rows = batches.map((b) =>
    el(
      'tr',
      { 'data-batch': b.id },
      el('td', {}, el('code', { class: 'id' }, b.id)),
      el('td', {}, dateTime.format(new Date(b.created_at))),
      el('td', { class: 'num' }, number.format(b.size)),
      el(
        'td',
        { class: 'progress' },
        el('progress', { max: b.size, value: b.finished }, `${b.finished}/${b.size}`),
        el('span', {}, b.done ? 'done' : `${Math.floor(b.progress * 100)} %`),
      ),
      el('td', { class: 'num' }, number.format(b.counts.succeeded)),
      el('td', { class: b.counts.failed > 0 ? 'num bad' : 'num' }, number.format(b.counts.failed)),
      el('td', { class: 'num' }, number.format(b.counts.canceled)),
    ),
  );
  $('batches').tBodies[0].replaceChildren(
    ...(rows.length > 0 ? rows : [emptyRow(7, 'No batches yet.')]),
  );
}

function renderFailures(jobs) {
  const rows = jobs.map((job) =>
    el(
      'tr',
      { 'data-job': job.id },
      el('td', {}, job.finished_at ? dateTime.format(new Date(job.finished_at)) : '–'),
      el('td', {}, el('code', { class: 'id' }, job.id)),
      el('td', { class: 'description' }, job.transaction.description),
      el(
        'td',
        { class: 'error' },
        job.error ? el('code', {}, job.error.code) : '',
        job.error ? ` ${job.error.message}` : '',
      ),
      el('td', { class: 'num' }, String(job.attempts)),
    ),
  );
  $('failures').tBodies[0].replaceChildren(
    ...(rows.length > 0 ? rows : [emptyRow(5, 'No failed jobs.')]),
  );
}

/**
 * The key holder's webhook endpoints (`null`: this server has no webhooks), each failing one
 * with its newest delivery, whose last answer says why it fails.
 */
async function readEndpoints() {
  let list;
  try {
    list = await api('/webhooks');
  } catch (err) {
    if (err instanceof ApiProblem && err.status === 404) return null;
    throw err;
  }
  return Promise.all(
    list.webhooks.map(async (endpoint) => {
      if (stateOf(endpoint) !== 'failing') return { endpoint, latest: undefined };
      const log = await api(`/webhooks/${encodeURIComponent(endpoint.id)}/deliveries?limit=1`);
      return { endpoint, latest: log.deliveries[0] };
    }),
  );
}

/** `disabled`, `failing` (no success since its first failure), `healthy`, or `new` (no tries). */
function stateOf(endpoint) {
  if (!endpoint.enabled) return 'disabled';
  if (endpoint.failing_since !== null) return 'failing';
  return endpoint.last_success_at === null ? 'new' : 'healthy';
}

/** "3 min", "2 h 5 min", "4 d 3 h": how long since `iso`. */
function since(iso) {
  const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 60_000));
  if (minutes < 1) return 'under 1 min';
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function renderEndpoints(endpoints) {
  const body = $('webhooks').tBodies[0];
  if (endpoints === null) {
    body.replaceChildren(emptyRow(7, 'This server does not deliver webhooks.'));
    return;
  }
  const when = (iso) => (iso === null ? '–' : dateTime.format(new Date(iso)));
  const rows = endpoints.map(({ endpoint, latest }) => {
    const state = stateOf(endpoint);
    const stateText = state === 'disabled' ? `disabled (${endpoint.disabled_reason})` : state;
    // The receiver's status, and the error unless it only says the same ("HTTP 500").
    const status = latest?.last_status ?? null;
    const error = latest?.last_error ?? null;
    const why = [
      status === null ? '' : el('code', {}, String(status)),
      error === null || error === `HTTP ${status}` ? '' : ` ${error}`,
    ];
    return el(
      'tr',
      { 'data-webhook': endpoint.id },
      el(
        'td',
        { class: 'endpoint' },
        el('span', { class: 'url' }, endpoint.url),
        endpoint.description ? el('small', {}, endpoint.description) : '',
      ),
      el('td', { class: `state ${state}`, 'data-state': state }, stateText),
      el('td', { class: 'last-success' }, when(endpoint.last_success_at)),
      el('td', { class: 'last-failure' }, when(endpoint.last_failure_at)),
      el(
        'td',
        { class: 'streak' },
        endpoint.failing_since === null ? '–' : since(endpoint.failing_since),
      ),
      el('td', { class: 'num waiting' }, number.format(endpoint.pending_deliveries)),
      el('td', { class: 'error' }, ...why),
    );
  });
  body.replaceChildren(
    ...(rows.length > 0 ? rows : [emptyRow(7, 'No webhook endpoints (POST /webhooks adds one).')]),
  );
}

function emptyRow(columns, text) {
  return el('tr', { class: 'empty' }, el('td', { colspan: columns }, text));
}

function start() {
  showKeyForm(true);
  notice('Loading…');
  void refresh();
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('key');
  const key = input.value.trim();
  if (key === '') return;
  sessionStorage.setItem(STORAGE_KEY, key);
  input.value = '';
  start();
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(STORAGE_KEY);
  showKeyForm(false);
  notice('Key forgotten. Paste a key to see your jobs.');
});

if (sessionStorage.getItem(STORAGE_KEY)) start();
