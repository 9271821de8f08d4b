// ducktail dashboard: a client of the daemon's JSON API (docs/api.md), with no dependencies.
// Every string from the API is inserted as text (through `el`), never parsed as HTML; styles go
// through classes or the CSSOM, never style attributes, so the page runs under a strict CSP.
'use strict';

const main = document.getElementById('main');
const liveStatus = document.querySelector('[data-testid="live-status"]');
const ACTIVE_MS = 5 * 60 * 1000;
const KINDS = [
  ['input', 'Input', 'tokens-input'],
  ['output', 'Output', 'tokens-output'],
  ['reasoning', 'Reasoning', 'tokens-reasoning'],
  ['cache_read', 'Cache read', 'tokens-cache-read'],
  ['cache_write', 'Cache write', 'tokens-cache-write'],
];
/** The coding agents the API knows (`app` of a session, keys of `group_by=app`), as people name them. */
const APPS = [['opencode', 'OpenCode'], ['claude_code', 'Claude Code'], ['codex', 'Codex']];
const appName = (app) => (APPS.find(([key]) => key === app) || [app, app || '—'])[1];

// ---------------------------------------------------------------- DOM helpers

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'style') throw new Error('el: use classes or the CSSOM, not style attributes');
    if (typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element; text children become text nodes, never markup. */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  return append(node, children);
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttributes(node, attributes);
  return append(node, children);
}

function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// ---------------------------------------------------------------- formatting

const integers = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const finite = (value) => typeof value === 'number' && Number.isFinite(value);
const pad = (number) => String(number).padStart(2, '0');

const fmtInt = (value) => (finite(value) ? integers.format(value) : '—');
const fmtUsd = (value) => (finite(value) ? '$' + value.toFixed(2) : '—');
/** Up to six decimals, for titles: the page shows two. */
const preciseUsd = (value) => (finite(value) ? '$' + value.toFixed(6).replace(/(\.\d\d\d*?)0+$/, '$1') + ' USD' : 'no cost');
/** Chart axes: enough digits to tell small amounts apart. */
const axisUsd = (value) => (value >= 1 || value === 0 ? '$' + value.toFixed(2) : '$' + Number(value.toPrecision(2)));
const fmtPercent = (fraction) => (finite(fraction) ? (fraction * 100).toFixed(1) + '%' : '—');

/** All five token kinds added up: what "tokens" means in this page's tables. */
const tokenSum = (usage) => (usage ? usage.input + usage.output + usage.reasoning + usage.cache_read + usage.cache_write : null);
const tokenTitle = (usage) => KINDS.map(([key, label]) => `${label}: ${fmtInt(usage[key])}`).join('\n');

function parseTime(text) {
  const millis = text ? Date.parse(text) : NaN;
  return Number.isNaN(millis) ? null : millis;
}

/** Microseconds since the epoch from RFC 3339, keeping the sub-millisecond digits. */
function parseMicros(text) {
  const match = text ? /\.(\d+)/.exec(text) : null;
  const base = parseTime(match ? text.replace(/\.\d+/, '') : text);
  return base === null ? null : base * 1000 + (match ? Number((match[1] + '00000').slice(0, 6)) : 0);
}

function fmtLocal(millis, seconds) {
  const d = new Date(millis);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ':' + pad(d.getSeconds()) : ''}`;
}

const clock = (millis) => fmtLocal(millis, true).slice(11);

function fmtDuration(ms) {
  if (!finite(ms)) return '—';
  if (ms < 1) return `${oneDecimal.format(ms * 1000)} µs`;
  if (ms < 1000) return `${oneDecimal.format(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${oneDecimal.format(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${pad(Math.floor(seconds % 60))} s`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${pad(minutes % 60)} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function fmtBytes(bytes) {
  if (!finite(bytes)) return '—';
  let value = bytes;
  let unit = 0;
  for (; value >= 1024 && unit < 4; unit += 1) value /= 1024;
  return `${unit ? value.toFixed(1) : value} ${['B', 'KiB', 'MiB', 'GiB', 'TiB'][unit]}`;
}

/** The UTC calendar day `daysAgo` days before today, as YYYY-MM-DD. */
const utcDay = (daysAgo) => new Date(Date.now() - daysAgo * 86400000).toISOString().slice(0, 10);
const shortId = (id) => (id && id.length > 14 ? id.slice(0, 12) + '…' : id || '—');
const isActive = (session) => Date.now() - (parseTime(session.updated_at) || 0) <= ACTIVE_MS;

// Small nodes used everywhere.
/**
 * A cost. With `unpriced` responses (models the price table does not know) the cost leaves them
 * out: shown as a lower bound, "≥ $1.23", or as "unpriced" when nothing was priced.
 */
const usdNode = (cost, attributes, unpriced) => {
  if (!unpriced) return el('span', Object.assign({ title: preciseUsd(cost) }, attributes), fmtUsd(cost));
  const note = `${fmtInt(unpriced)} response${unpriced === 1 ? '' : 's'} of models without a price: not in this cost`;
  return el('span', Object.assign({ title: `${preciseUsd(cost)}; ${note}`, 'data-unpriced': unpriced }, attributes), cost ? '≥ ' + fmtUsd(cost) : 'unpriced');
};
const tokensNode = (usage) => el('span', { title: usage ? tokenTitle(usage) : null }, fmtInt(tokenSum(usage)));
const code = (text) => el('code', null, text);
const muted = (text) => el('span', { class: 'muted small' }, text);
const errorText = (text) => el('span', { class: 'error-text' }, '⚠ ' + text);
const errorCount = (count) => (count ? errorText(fmtInt(count)) : '0');
const activeNode = (session) => (isActive(session) ? el('span', { class: 'badge badge-live' }, '● active now') : el('span', { class: 'muted' }, 'idle'));
const sessionLink = (id, title) => el('a', { href: '#/session/' + encodeURIComponent(id) }, title || '(untitled)');
/** Project id → what to call it (`label` of /api/projects), filled by loadProjects(). */
const projectLabels = new Map();
const projectLabel = (id) => projectLabels.get(id) || shortId(id);
/** Reads /api/projects into projectLabels; a view waits for it before it draws project names. */
async function loadProjects(signal) {
  try {
    const answer = await api('/api/projects', { signal });
    for (const project of answer.projects) projectLabels.set(project.id, project.label);
  } catch (error) {
    if (error instanceof SignInRequired) throw error;
    // Without labels the ids show, shortened: the view still works.
  }
}
const projectLink = (id, text) => el('a', { href: '#/sessions?project=' + encodeURIComponent(id), title: id }, text || projectLabel(id));
const appTag = (app) => (app ? el('span', { class: 'tag tag-app', title: `recorded by ${appName(app)} (app=${app})` }, appName(app)) : muted('—'));
const subAgentTag = (session) => (session.parent_id ? el('span', { class: 'tag', title: 'started by ' + session.parent_id }, 'sub-agent') : null);

function timeNode(text, seconds) {
  const millis = parseTime(text);
  return millis === null ? el('span', { class: 'muted' }, '—') : el('time', { datetime: text, title: text + ' (UTC)' }, fmtLocal(millis, seconds));
}

function statusBadge(status) {
  if (!status) return el('span', { class: 'badge muted' }, 'unknown');
  if (/error|fail|degraded/i.test(status)) return el('span', { class: 'badge badge-error' }, '✕ ' + status);
  return el('span', { class: 'badge ' + (/running|pending|starting|waiting/i.test(status) ? 'badge-warn' : 'badge-ok') }, status);
}

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

class SignInRequired extends Error {}

/**
 * JSON from the daemon. A failure carries the `error` message of the JSON body; a 401 raises
 * SignInRequired; `accept` lists other statuses whose body is the answer (503 of /health/detailed).
 */
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      method: options.body ? 'POST' : 'GET',
      // `no-cache`: the answer of the newest commit, never one kept for up to http.max_staleness
      // (the page refreshes because a commit was announced, and must show it).
      headers: options.body ? { accept: 'application/json', 'content-type': 'application/json' } : { accept: 'application/json', 'cache-control': 'no-cache' },
      body: options.body ? JSON.stringify(options.body) : undefined,
      credentials: 'same-origin',
      cache: 'no-store',
      signal: options.signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, `the daemon does not answer (${error.message})`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (response.status === 401) throw new SignInRequired((body && body.error) || 'sign in needed');
  ensureEvents();
  if (!response.ok && !(options.accept || []).includes(response.status)) {
    throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
  }
  return body;
}

/** `path?query` from an object, leaving out empty values. */
function query(path, parameters) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(parameters)) if (value !== null && value !== undefined && value !== '' && value !== false) search.set(key, value);
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

// ---------------------------------------------------------------- tables, charts

/** A numeric cell spec; content is text or a node. */
const num = (content, field) => ({ content, num: true, field });
const numCol = (label) => ({ label, num: true });

function cell(spec) {
  if (spec && typeof spec === 'object' && 'content' in spec) return el('td', { class: spec.num ? 'num' : null, 'data-field': spec.field }, spec.content);
  return el('td', null, spec);
}

/** A table: columns are labels or {label, num}; rows are arrays of cells or {cells, attributes}. */
function table({ caption, columns, rows, attributes, empty, footer }) {
  const body = el('tbody', null, rows.map((row) => (Array.isArray(row) ? el('tr', null, row.map(cell)) : el('tr', row.attributes, row.cells.map(cell)))));
  if (!rows.length && empty) body.appendChild(el('tr', null, el('td', { colspan: columns.length, class: 'empty' }, empty)));
  return el('table', attributes, caption ? el('caption', null, caption) : null,
    el('thead', null, el('tr', null, columns.map((column) => el('th', { scope: 'col', class: column.num ? 'num' : null }, column.label || column)))),
    body,
    footer ? el('tfoot', null, el('tr', null, el('th', { scope: 'row' }, footer[0]), footer.slice(1).map(cell))) : null);
}

const section = (title, ...children) => el('section', { class: 'panel' }, el('h2', null, title), ...children);
const loading = () => el('p', { class: 'muted' }, 'Loading…');
const facts = (rows) => el('dl', { class: 'facts' }, rows.map(([term, value]) => el('div', null, el('dt', null, term), el('dd', null, value))));

/** A bar chart in SVG from {label, value, title} items; the table beside it has the same figures. */
function barChart(items, label, labelEvery) {
  const [width, height, left, top, bottom] = [800, 220, 60, 12, 30];
  const plotWidth = width - left - 8;
  const plotHeight = height - top - bottom;
  const max = Math.max(0, ...items.map((item) => item.value || 0));
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, class: 'chart' }, svg('title', null, label));
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    append(chart, [svg('line', { x1: left, x2: width - 8, y1: y, y2: y, class: 'chart-grid' }),
      svg('text', { x: left - 6, y: y + 4, class: 'chart-axis', 'text-anchor': 'end' }, axisUsd(max * fraction))]);
  }
  if (!max) chart.appendChild(svg('text', { x: left + plotWidth / 2, y: top + plotHeight / 2, class: 'chart-axis', 'text-anchor': 'middle' }, 'no spend in this period'));
  const slot = plotWidth / Math.max(items.length, 1);
  const barWidth = Math.max(1, Math.min(48, slot * 0.75));
  const every = labelEvery || Math.ceil(items.length / 10);
  items.forEach((item, index) => {
    const barHeight = max > 0 ? ((item.value || 0) / max) * plotHeight : 0;
    chart.appendChild(svg('rect', {
      x: (left + slot * index + (slot - barWidth) / 2).toFixed(1), y: (top + plotHeight - barHeight).toFixed(1),
      width: barWidth.toFixed(1), height: Math.max(barHeight, item.value > 0 ? 1 : 0).toFixed(1), class: 'chart-bar',
    }, svg('title', null, item.title)));
    if (index % every === 0) {
      chart.appendChild(svg('text', { x: (left + slot * (index + 0.5)).toFixed(1), y: height - bottom + 16, class: 'chart-axis', 'text-anchor': 'middle' },
        item.label.length > 16 ? item.label.slice(0, 15) + '…' : item.label));
    }
  });
  return chart;
}

/**
 * A waterfall: one row per tree node, its bar on a time axis shared by all rows, rows with
 * children collapsible. `o`: roots, id, start/end (µs), name, columns [{label, num, field,
 * value}], collapsed (a Set kept across refreshes), rowAttribute, barClass, barTitle, details.
 */
function waterfall(o) {
  const rows = [];
  const walk = (node, depth, ancestors) => {
    const id = o.id(node);
    rows.push({ node, depth, ancestors, id, start: o.start(node), end: o.end(node) });
    for (const child of node.children || []) walk(child, depth + 1, ancestors.concat(id));
  };
  o.roots.forEach((root) => walk(root, 0, []));
  const starts = rows.map((row) => row.start).filter((value) => value !== null);
  const first = Math.min(...starts);
  const last = Math.max(...starts, ...rows.map((row) => row.end).filter((value) => value !== null));
  const span = last > first ? last - first : 1;
  const axis = el('div', { class: 'wf-axis', 'aria-hidden': 'true' });
  if (starts.length) {
    for (const fraction of [0, 0.5, 1]) {
      const tick = axis.appendChild(el('span', { class: 'wf-tick' }, fraction ? '+' + fmtDuration((span * fraction) / 1000) : '0'));
      tick.style.setProperty('left', fraction * 100 + '%');
    }
  }
  const body = el('tbody');
  const records = [];
  const update = () => {
    for (const record of records) {
      record.tr.hidden = record.ancestors.some((id) => o.collapsed.has(id));
      if (record.detail) record.detail.hidden = record.tr.hidden || !record.open;
    }
  };
  for (const row of rows) {
    const label = el('div', { class: 'wf-label' });
    label.style.setProperty('--depth', String(row.depth));
    if ((row.node.children || []).length) {
      const mark = el('span', { 'aria-hidden': 'true' });
      const button = el('button', { type: 'button', class: 'wf-toggle', title: 'Show or hide the rows under this one' }, mark, el('span', { class: 'visually-hidden' }, 'rows under this one'));
      const show = () => {
        const expanded = !o.collapsed.has(row.id);
        button.setAttribute('aria-expanded', String(expanded));
        mark.textContent = expanded ? '▾' : '▸';
      };
      button.addEventListener('click', () => {
        if (o.collapsed.has(row.id)) o.collapsed.delete(row.id);
        else o.collapsed.add(row.id);
        show();
        update();
      });
      show();
      label.appendChild(button);
    } else {
      label.appendChild(el('span', { class: 'wf-leaf', 'aria-hidden': 'true' }, '·'));
    }
    append(label, [o.name(row.node)]);
    const track = el('div', { class: 'wf-track' });
    if (row.start !== null) {
      const end = row.end !== null ? row.end : row.start;
      const bar = track.appendChild(el('div', { class: 'wf-bar ' + o.barClass(row.node), title: o.barTitle(row.node) }));
      bar.style.setProperty('left', (((row.start - first) / span) * 100).toFixed(3) + '%');
      bar.style.setProperty('width', Math.max(((end - row.start) / span) * 100, 0.4).toFixed(3) + '%');
    } else {
      track.appendChild(muted('no times recorded'));
    }
    const tr = body.appendChild(el('tr', { [o.rowAttribute]: row.id, 'data-depth': row.depth },
      el('th', { scope: 'row', class: 'wf-name' }, label), el('td', { class: 'wf-cell' }, track),
      o.columns.map((column) => el('td', { class: column.num ? 'num' : null, 'data-field': column.field }, column.value(row.node)))));
    const record = { tr, ancestors: row.ancestors, detail: null, open: false };
    if (o.details) {
      const button = label.appendChild(el('button', { type: 'button', class: 'link-button small', 'aria-expanded': 'false' }, 'details'));
      record.detail = body.appendChild(el('tr', { class: 'wf-detail' }, el('td', { colspan: o.columns.length + 2 }, o.details(row.node))));
      button.addEventListener('click', () => {
        record.open = !record.open;
        button.setAttribute('aria-expanded', String(record.open));
        update();
      });
    }
    records.push(record);
  }
  update();
  return el('div', { class: 'waterfall', 'data-testid': o.testid },
    el('table', { class: 'wf-table' }, el('caption', null, o.caption),
      el('thead', null, el('tr', null, el('th', { scope: 'col', class: 'wf-name' }, o.nameLabel),
        el('th', { scope: 'col', class: 'wf-cell' }, el('span', { class: 'visually-hidden' }, 'Time on a shared axis'), axis),
        o.columns.map((column) => el('th', { scope: 'col', class: column.num ? 'num' : null }, column.label)))),
      body));
}

// ---------------------------------------------------------------- view frame

/** A view's frame: heading, error banner, body. */
function frame(context, title) {
  context.heading = el('h1', { tabindex: '-1' }, title);
  context.banner = el('div', { class: 'error-banner', role: 'alert', hidden: true });
  context.body = el('div');
  fill(main, context.heading, context.banner, context.body);
}

function showError(context, error, first) {
  if (error instanceof SignInRequired) return showSignIn();
  const message = `${first ? 'Could not load this view' : 'Could not refresh'}: ${error.message}${error.status ? ` (HTTP ${error.status})` : ''}`;
  if (!first) {
    fill(context.banner, message).hidden = false;
    return undefined;
  }
  const retry = el('button', { type: 'button', onclick: () => router(false) }, 'Try again');
  fill(context.body, el('div', { class: 'error-panel', role: 'alert', 'data-testid': 'view-error' }, el('p', null, message), retry));
  return undefined;
}

/**
 * The view's refresh: runs `load`, one at a time (a refresh asked for meanwhile runs once after);
 * the first load, done or failed, marks <main> as loaded.
 */
function refresher(context, load) {
  let running = null;
  let again = false;
  let first = true;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    const isFirst = first;
    running = load(isFirst).then(() => {
      first = false;
      context.banner.hidden = true;
    }, (error) => {
      if (context.signal.aborted || error.name === 'AbortError') return;
      showError(context, error, isFirst);
      if (error instanceof SignInRequired) throw error;
    }).then(() => {
      if (isFirst && !context.signal.aborted) main.setAttribute('data-loaded', 'true');
    }, () => {});
    await running;
    running = null;
    if (again && !context.signal.aborted) {
      again = false;
      run();
    }
  };
  run();
  return run;
}

// ---------------------------------------------------------------- Overview

function viewOverview(context) {
  frame(context, 'Overview');
  const spend = {};
  const spendNote = {};
  const cards = [['spend-all', 'All time'], ['spend-today', 'Today (UTC)'], ['spend-7d', 'Last 7 days'], ['spend-30d', 'Last 30 days'], ['spend-last-hour', 'Last hour (burn rate)']]
    .map(([testid, label]) => el('li', { class: 'card' }, el('span', { class: 'card-label' }, label),
      spend[testid] = el('span', { 'data-testid': testid, class: 'figure' }, '—'), spendNote[testid] = muted('')));
  const tokens = {};
  const cacheRate = el('span', { 'data-testid': 'cache-hit-rate', class: 'figure' }, '—');
  const chartBox = el('div', null, loading());
  const chartTable = el('div');
  const tops = { model: el('div', null, loading()), agent: el('div', null, loading()), project: el('div', null, loading()) };
  const recentBox = el('div', null, loading());
  append(context.body, [
    section('Spend (USD)', el('ul', { class: 'cards' }, cards)),
    el('div', { class: 'columns' },
      section('Tokens', table({
        caption: 'Tokens by kind, all time',
        columns: ['Kind', numCol('Tokens')],
        rows: KINDS.map(([key, label, testid]) => [label, num(tokens[key] = el('span', { 'data-testid': testid }, '—'))]),
        attributes: { class: 'compact' },
      })),
      section('Cache-hit rate', el('p', { class: 'card' }, cacheRate, muted('cache read ÷ (input + cache read + cache write), all time')))),
    section('Cost per day, last 30 days (UTC)', chartBox, el('details', null, el('summary', null, 'The same figures as a table'), chartTable)),
    el('div', { class: 'columns three' }, section('Top models', tops.model), section('Top agents', tops.agent), section('Top projects', tops.project)),
    section('Recent sessions', recentBox),
  ]);

  const usage = (parameters) => api(query('/api/usage', parameters), { signal: context.signal });
  const load = async () => {
    const week = utcDay(6);
    const month = utcDay(29);
    const hourAgo = new Date(Date.now() - 3600000).toISOString();
    const answers = await Promise.all([
      usage({ group_by: 'day' }), usage({ group_by: 'day', since: utcDay(0) }), usage({ group_by: 'day', since: week }),
      usage({ group_by: 'day', since: month }), usage({ group_by: 'day', since: hourAgo }),
      usage({ group_by: 'model' }), usage({ group_by: 'agent' }), usage({ group_by: 'project' }),
      api('/api/sessions?limit=10', { signal: context.signal }),
      loadProjects(context.signal),
    ]);
    const notes = ['all time', 'since ' + utcDay(0), 'since ' + week, 'since ' + month, 'since ' + fmtLocal(Date.parse(hourAgo))];
    Object.keys(spend).forEach((testid, index) => {
      const total = answers[index].total;
      spend[testid].textContent = fmtUsd(total ? total.usage.cost : null);
      spend[testid].title = total ? preciseUsd(total.usage.cost) : 'no total in the answer';
      const unpriced = total && total.unpriced_steps ? ` · ${fmtInt(total.unpriced_steps)} unpriced, not in this sum` : '';
      spendNote[testid].textContent = `${notes[index]} · ${fmtInt(total ? total.steps : null)} steps${unpriced}`;
    });
    const all = answers[0].total ? answers[0].total.usage : null;
    for (const [key] of KINDS) tokens[key].textContent = fmtInt(all ? all[key] : null);
    const overall = answers[0].total;
    if (overall) {
      cacheRate.textContent = overall.cache_hit_rate === null ? '—' : fmtPercent(overall.cache_hit_rate);
      cacheRate.title = `cache_read / (input + cache_read + cache_write), from /api/usage's total; ${fmtInt(overall.tokens)} tokens in all`;
    }
    const byDay = new Map(answers[3].rows.map((row) => [row.key, row.usage.cost]));
    const days = Array.from({ length: 30 }, (_, index) => utcDay(29 - index));
    fill(chartBox, barChart(days.map((day) => ({ label: day.slice(5), value: byDay.get(day) || 0, title: `${day}: ${preciseUsd(byDay.get(day) || 0)}` })),
      `Cost per day in USD, ${month} to ${days[29]}; the table below lists each day with spend`, 5));
    fill(chartTable, usageTable(answers[3].rows, 'day', 'Cost per day, last 30 days', null));
    ['model', 'agent', 'project'].forEach((kind, index) => {
      const top = answers[5 + index].rows.slice().sort((a, b) => b.usage.cost - a.usage.cost).slice(0, 5);
      fill(tops[kind], table({
        caption: `Top 5 by cost, all time`,
        columns: [kind[0].toUpperCase() + kind.slice(1), numCol('Sessions'), numCol('Tokens'), numCol('Cost')],
        rows: top.map((row) => [kind === 'project' ? projectLink(row.key) : row.key, num(fmtInt(row.sessions)), num(tokensNode(row.usage)), num(usdNode(row.usage.cost, null, row.unpriced_steps))]),
        empty: 'Nothing recorded yet.',
        attributes: { class: 'compact', 'data-testid': `top-${kind}s` },
      }));
    });
    fill(recentBox, table({
      caption: 'The 10 newest sessions, sub-agents included; active = updated in the last 5 minutes',
      columns: ['Title', 'Updated', numCol('Messages'), numCol('Tokens'), numCol('Cost'), 'Now'],
      rows: answers[8].sessions.map((session) => ({
        attributes: { 'data-session-id': session.id },
        cells: [{ content: [sessionLink(session.id, session.title), subAgentTag(session)], field: 'title' }, { content: timeNode(session.updated_at), field: 'updated' },
          num(fmtInt(session.messages), 'messages'), num(tokensNode(session.usage), 'tokens'), num(usdNode(session.usage.cost, null, session.unpriced_steps), 'cost'), { content: activeNode(session), field: 'active' }],
      })),
      empty: 'No sessions yet.',
      attributes: { 'data-testid': 'recent-sessions' },
    }));
  };
  const refresh = refresher(context, load);
  return { refresh, onCommit: (batch) => (batch.sessions.size || batch.lagged) && refresh() };
}

/** /api/usage rows as a table: key, tokens by kind, steps, sessions, cost; `total` from the API. */
function usageTable(rows, groupBy, caption, total, attributes) {
  const kindCells = (usage) => KINDS.map(([key]) => num(fmtInt(usage[key]), key));
  return table({
    caption,
    columns: [{ day: 'Day (UTC)', model: 'Model', agent: 'Agent', project: 'Project', app: 'Agent app' }[groupBy], ...KINDS.map(([, label]) => numCol(label)), numCol('Steps'), numCol('Sessions'), numCol('Cost')],
    rows: rows.map((row) => ({
      attributes: { 'data-key': row.key },
      cells: [{ content: groupBy === 'project' ? projectLink(row.key) : groupBy === 'app' ? appName(row.key) : row.key, field: 'key' }, ...kindCells(row.usage),
        num(fmtInt(row.steps), 'steps'), num(fmtInt(row.sessions), 'sessions'), num(usdNode(row.usage.cost, null, row.unpriced_steps), 'cost')],
    })),
    footer: total && ['Total', ...kindCells(total.usage), num(fmtInt(total.steps), 'steps'), num(''), num(usdNode(total.usage.cost, null, total.unpriced_steps), 'cost')],
    empty: 'No usage in this period.',
    attributes,
  });
}

// ---------------------------------------------------------------- Sessions

function viewSessions(context) {
  frame(context, 'Sessions');
  const params = context.route.params;
  const state = {
    filters: {
      app: params.get('app') || '', project: params.get('project') || '', model: params.get('model') || '', agent: params.get('agent') || '',
      q: params.get('q') || '', since: params.get('since') || '', until: params.get('until') || '', root_only: params.get('root_only') === 'true',
    },
    limit: Number(params.get('limit')) || 50,
    cursors: [null],
    next: null,
    rows: new Map(),
    order: [],
    // The API sorts and pages: by creation (the default), update, cost or tokens.
    sort: { key: ['updated', 'cost', 'tokens'].includes(params.get('sort')) ? params.get('sort') : 'created', down: params.get('order') !== 'asc' },
  };
  const control = (label, node) => el('div', { class: 'field' }, el('label', { for: node.id }, label), node);
  const clear = () => {
    [app, project, model, agent, search, since, until].forEach((node) => { node.value = ''; });
    rootOnly.checked = false;
    form.requestSubmit();
  };
  const app = el('select', { id: 'f-app' }, [['', 'All apps'], ...APPS].map(([key, name]) => el('option', { value: key, selected: key === state.filters.app }, name)));
  const project = el('select', { id: 'f-project' }, el('option', { value: '' }, 'All projects'),
    state.filters.project ? el('option', { value: state.filters.project, selected: true, title: state.filters.project }, projectLabel(state.filters.project)) : null);
  const model = el('select', { id: 'f-model' }, el('option', { value: '' }, 'All models'),
    state.filters.model ? el('option', { value: state.filters.model, selected: true }, state.filters.model) : null);
  const agent = el('select', { id: 'f-agent' }, el('option', { value: '' }, 'All agents'),
    state.filters.agent ? el('option', { value: state.filters.agent, selected: true }, state.filters.agent) : null);
  const search = el('input', { id: 'f-q', type: 'search', value: state.filters.q, placeholder: 'words in the title' });
  const since = el('input', { id: 'f-since', type: 'date', value: state.filters.since });
  const until = el('input', { id: 'f-until', type: 'date', value: state.filters.until });
  const rootOnly = el('input', { id: 'f-root', type: 'checkbox', checked: state.filters.root_only });
  const limit = el('select', { id: 'f-limit' }, [25, 50, 100, 200, 500].map((count) => el('option', { value: count, selected: count === state.limit }, count)));
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
    control('App', app), control('Project', project), control('Model', model), control('Agent', agent), control('Title contains', search), control('Created since (UTC)', since), control('Created before (UTC)', until),
    el('div', { class: 'field checkbox' }, rootOnly, el('label', { for: 'f-root' }, 'Root sessions only')), control('Per page', limit),
    el('div', { class: 'field actions' }, el('button', { type: 'submit' }, 'Apply'), el('button', { type: 'button', onclick: clear }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    state.filters = { app: app.value, project: project.value, model: model.value, agent: agent.value, q: search.value.trim(), since: since.value, until: until.value, root_only: rootOnly.checked };
    state.limit = Number(limit.value);
    restart();
  });
  /** Back to the first page of the current filters and sort, remembered in the address. */
  function restart() {
    const sort = { sort: state.sort.key === 'created' ? '' : state.sort.key, order: state.sort.down ? '' : 'asc' };
    history.replaceState(null, '', query('#/sessions', Object.assign({}, state.filters, sort, { limit: state.limit === 50 ? '' : state.limit })));
    state.cursors = [null];
    refresh();
  }

  const sortable = {};
  const sortHeader = (key, label, numeric) => {
    const mark = el('span', { 'aria-hidden': 'true' });
    const button = el('button', { type: 'button', class: 'sort' }, label, mark);
    button.addEventListener('click', () => {
      state.sort = { key, down: state.sort.key === key ? !state.sort.down : true };
      restart();
    });
    const th = el('th', { scope: 'col', class: numeric ? 'num' : null }, button);
    sortable[key] = { th, button, mark };
    return th;
  };
  const head = (label) => el('th', { scope: 'col', class: 'num' }, label);
  const tbody = el('tbody');
  const caption = el('caption');
  const previous = el('button', { type: 'button' }, '← Previous');
  const next = el('button', { type: 'button' }, 'Next →');
  const pageLabel = el('span', { class: 'muted', 'aria-live': 'polite' });
  previous.addEventListener('click', () => state.cursors.length > 1 && (state.cursors.pop(), refresh()));
  next.addEventListener('click', () => state.next && (state.cursors.push(state.next), refresh()));
  append(context.body, [form,
    el('div', { class: 'table-scroll' }, el('table', { 'data-testid': 'sessions-table' }, caption,
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Title'), el('th', { scope: 'col' }, 'App'), sortHeader('created', 'Created'), sortHeader('updated', 'Updated'),
        head('Messages'), head('Tool calls'), head('Errors'), head('Sub-agents'), sortHeader('tokens', 'Tokens', true), sortHeader('cost', 'Cost', true),
        el('th', { scope: 'col' }, 'Now'))),
      tbody)),
    el('nav', { class: 'pager', 'aria-label': 'Pages' }, previous, pageLabel, next)]);

  const pageQuery = (cursor) => query('/api/sessions', Object.assign({}, state.filters, { sort: state.sort.key, order: state.sort.down ? 'desc' : 'asc', limit: state.limit, cursor }));
  // As the API orders: a session never updated counts as updated when it was created.
  const sortValue = (session, key) => (key === 'cost' ? session.usage.cost : key === 'tokens' ? tokenSum(session.usage) : parseTime(key === 'updated' ? session.updated_at || session.created_at : session.created_at) || 0);

  /** Writes a session into its row, creating the row the first time; the <tr> is kept. */
  function upsert(session, flash) {
    let record = state.rows.get(session.id);
    if (!record) state.rows.set(session.id, record = { tr: el('tr', { 'data-session-id': session.id }) });
    record.session = session;
    const cells = [
      ['title', [sessionLink(session.id, session.title), subAgentTag(session)]], ['app', appTag(session.app)], ['created', timeNode(session.created_at)], ['updated', timeNode(session.updated_at)],
      ['messages', fmtInt(session.messages), 1], ['tool-calls', fmtInt(session.tool_calls), 1], ['errors', errorCount(session.errors), 1],
      ['children', fmtInt(session.children), 1], ['tokens', tokensNode(session.usage), 1], ['cost', usdNode(session.usage.cost, null, session.unpriced_steps), 1], ['active', activeNode(session)],
    ];
    if (!record.tr.cells.length) cells.forEach(([field, , numeric]) => record.tr.appendChild(el('td', { 'data-field': field, class: numeric ? 'num' : null })));
    cells.forEach(([, content], index) => fill(record.tr.cells[index], content));
    if (flash) {
      record.tr.classList.remove('flash');
      void record.tr.offsetWidth;
      record.tr.classList.add('flash');
    }
  }

  function render() {
    const { key, down } = state.sort;
    const records = state.order.map((id) => state.rows.get(id));
    // The page comes sorted; rows a commit updated in place keep it sorted (a stable sort keeps
    // the API's order among equals).
    records.sort((a, b) => (sortValue(a.session, key) - sortValue(b.session, key)) * (down ? -1 : 1));
    fill(tbody, records.map((record) => record.tr));
    if (!records.length) tbody.appendChild(el('tr', null, el('td', { colspan: 11, class: 'empty' }, 'No sessions match these filters.')));
    for (const [name, { th, button, mark }] of Object.entries(sortable)) {
      th.setAttribute('aria-sort', name === key ? (down ? 'descending' : 'ascending') : 'none');
      mark.textContent = name === key ? (down ? ' ▼' : ' ▲') : '';
      button.title = 'Sort every session by ' + name;
    }
    caption.textContent = `Sessions sorted by ${key}, ${down ? 'largest or newest first' : 'smallest or oldest first'}, across every page.`
      + ' Tokens and cost are each session\'s own; a session\'s page adds its sub-agents.';
    fill(pageLabel, `Page ${state.cursors.length} · ${fmtInt(records.length)} sessions`);
    previous.disabled = state.cursors.length < 2;
    next.disabled = !state.next;
  }

  /** Takes a page answer: rows it names are written in place, rows it lacks dropped. */
  function take(answer, flashIds) {
    const ids = answer.sessions.map((session) => session.id);
    for (const id of Array.from(state.rows.keys())) if (!ids.includes(id)) state.rows.delete(id);
    for (const session of answer.sessions) if (!flashIds || flashIds.has(session.id) || !state.rows.has(session.id)) upsert(session, !!flashIds);
    state.order = ids;
    state.next = answer.next_cursor;
    render();
  }

  const refresh = refresher(context, async () => {
    take(await api(pageQuery(state.cursors[state.cursors.length - 1]), { signal: context.signal }));
  });

  // The choices only feed the filters; the table works without them.
  Promise.all([api('/api/usage?group_by=project', { signal: context.signal }), loadProjects(context.signal)]).then(([answer]) => {
    const keys = answer.rows.map((row) => row.key).filter((key) => key !== state.filters.project);
    append(project, keys.map((key) => el('option', { value: key, title: key }, projectLabel(key))));
    if (state.filters.project) project.options[1].textContent = projectLabel(state.filters.project);
  }, () => {});
  for (const [select, group, chosen] of [[model, 'model', state.filters.model], [agent, 'agent', state.filters.agent]]) {
    api('/api/usage?group_by=' + group, { signal: context.signal }).then((answer) => {
      append(select, answer.rows.map((row) => row.key).filter((key) => key !== chosen).map((key) => el('option', { value: key }, key)));
    }, () => {});
  }

  /** Re-reads only the rows a commit names; on the first page, also takes in new sessions. */
  async function onCommit(batch) {
    if (batch.lagged) return refresh();
    const named = batch.sessions;
    const shown = Array.from(named).filter((id) => state.rows.has(id));
    try {
      if (state.cursors.length === 1 && shown.length < named.size) {
        take(await api(pageQuery(null), { signal: context.signal }), named);
      } else if (shown.length > 40) {
        const answer = await api(pageQuery(state.cursors[state.cursors.length - 1]), { signal: context.signal });
        answer.sessions.filter((session) => named.has(session.id) && state.rows.has(session.id)).forEach((session) => upsert(session, true));
        render();
      } else if (shown.length) {
        const answers = await Promise.all(shown.map((id) => api('/api/sessions/' + encodeURIComponent(id), { signal: context.signal })));
        answers.forEach((answer) => upsert(answer.session, true));
        render();
      }
    } catch (error) {
      if (!context.signal.aborted && error.name !== 'AbortError') showError(context, error, false);
    }
    return undefined;
  }
  return { refresh, onCommit };
}

// ---------------------------------------------------------------- Session

function viewSession(context) {
  const id = context.route.id;
  frame(context, 'Session');
  const collapsed = context.keep.collapsed || (context.keep.collapsed = new Set());
  const boxes = Array.from({ length: 6 }, () => el('div', null, loading()));
  const [figures, tree, usage, tools, files, timeline] = boxes;
  context.heading.before(el('p', { class: 'breadcrumb' }, el('a', { href: '#/sessions' }, '← Sessions')));
  append(context.body, [
    section('Figures', figures),
    section('Delegation tree', muted('Each row is this session or a sub-agent it started, on one time axis; own = the row\'s session, cumulative = with all rows under it; tokens = all kinds added.'), tree),
    usage, tools, files,
    section('Timeline', timeline),
  ]);
  let treeSessions = new Set([id]);
  const path = '/api/sessions/' + encodeURIComponent(id);

  const load = async () => {
    const signal = context.signal;
    const [summary, trace, lines] = await Promise.all([
      api(path, { signal }),
      api('/api/traces/' + encodeURIComponent(id), { signal }).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      }),
      api(path + '/timeline?max_chars=4000', { signal }),
      loadProjects(signal),
    ]);
    if (signal.aborted) return;
    const session = summary.session;
    context.heading.textContent = session.title || '(untitled session)';
    document.title = `${session.title || id} · ducktail`;
    fill(figures,
      facts([
        ['Session id', code(session.id)],
        ['App', appTag(session.app)],
        ['Project', session.project_id ? [projectLink(session.project_id), ' ', code(session.project_id)] : '—'],
        ['Started by', session.parent_id ? sessionLink(session.parent_id, session.parent_id) : 'nobody (a root session)'],
        ['Created', timeNode(session.created_at, true)],
        ['Updated', [timeNode(session.updated_at, true), ' ', activeNode(session)]],
        ['Messages', fmtInt(session.messages)],
        ['Tool calls', fmtInt(session.tool_calls)],
        ['Errors', errorCount(session.errors)],
        ['Cost (own)', usdNode(session.usage.cost, { 'data-testid': 'session-cost' }, session.unpriced_steps)],
        ['Tokens (own)', tokensNode(session.usage)],
      ]),
      table({
        caption: 'Tokens by kind, this session\'s own finish steps',
        columns: [...KINDS.map(([, label]) => numCol(label)), numCol('Cost')],
        rows: [[...KINDS.map(([key]) => num(fmtInt(session.usage[key]), key)), num(usdNode(session.usage.cost, null, session.unpriced_steps), 'cost')]],
        attributes: { class: 'compact' },
      }));
    treeSessions = new Set([id]);
    if (trace) {
      (function collect(node) {
        treeSessions.add(node.session_id);
        node.children.forEach(collect);
      })(trace);
      fill(tree, traceWaterfall(trace));
    } else {
      fill(tree, el('p', { class: 'muted' }, 'No trace knows this session yet.'));
    }
    const byTable = (rows, label) => section(label + 's', table({
      caption: `By ${label.toLowerCase()}, this session's own steps`,
      columns: [label, numCol('Steps'), numCol('Tokens'), numCol('Cost')],
      rows: rows.map((row) => [row.key, num(fmtInt(row.steps)), num(tokensNode(row.usage)), num(usdNode(row.usage.cost))]),
      empty: 'No finish steps.',
      attributes: { class: 'compact' },
    }));
    fill(usage, el('div', { class: 'columns' }, byTable(summary.by_model, 'Model'), byTable(summary.by_agent, 'Agent')));
    fill(tools, section('Tools', table({
      caption: 'Tool calls; durations over calls with both times',
      columns: ['Tool', numCol('Calls'), numCol('Errors'), numCol('p50'), numCol('p95')],
      rows: summary.tools.map((tool) => [tool.tool, num(fmtInt(tool.calls)), num(errorCount(tool.errors)), num(fmtDuration(tool.p50_ms)), num(fmtDuration(tool.p95_ms))]),
      empty: 'No tool calls.',
      attributes: { class: 'compact' },
    })));
    const operations = Object.entries(summary.files || {});
    const diff = summary.diff;
    fill(files, el('div', { class: 'columns three' },
      section('Files touched', operations.length
        ? operations.map(([operation, paths]) => [el('h3', null, `${operation} (${fmtInt(paths.length)})`), el('ul', { class: 'paths' }, paths.map((file) => el('li', null, code(file))))])
        : el('p', { class: 'muted' }, 'No file reads, writes or edits recorded.')),
      section('Diff', el('p', null, `${fmtInt(diff.files)} file${diff.files === 1 ? '' : 's'} changed, `,
        el('span', { class: 'added' }, `+${fmtInt(diff.additions)} added`), ', ', el('span', { class: 'deleted' }, `−${fmtInt(diff.deletions)} deleted`))),
      section('Todos', summary.todos.length
        ? el('ul', { class: 'todos' }, summary.todos.map((todo) => el('li', { class: 'todo-' + todo.status },
          el('span', { class: 'tag' }, todo.status || '?'), ' ', todo.content || '', todo.priority ? muted(` · ${todo.priority} priority`) : null)))
        : el('p', { class: 'muted' }, 'No todo list.'),
      summary.children.length ? [el('h3', null, 'Sub-agent sessions'), el('ul', null, summary.children.map((child) => el('li', null, sessionLink(child, child))))] : null)));
    const open = new Set(Array.from(timeline.querySelectorAll('details[open]'), (node) => node.dataset.key));
    fill(timeline, renderTimeline(lines.messages, open));
  };

  function traceWaterfall(trace) {
    return waterfall({
      testid: 'waterfall',
      caption: 'Delegation waterfall: one time axis; own and cumulative tokens and cost',
      roots: [trace],
      id: (node) => node.trace_id,
      rowAttribute: 'data-trace-id',
      collapsed,
      start: (node) => parseMicros(node.started_at),
      end: (node) => parseMicros(node.ended_at) ?? (node.status === 'running' ? Date.now() * 1000 : null),
      nameLabel: 'Agent',
      name: (node) => [el('span', { class: 'wf-agent' }, node.agent || 'unknown agent'), node.parent_agent ? muted(' ← ' + node.parent_agent) : null, ' ',
        node.session_id === id ? muted('(this session)') : el('a', { href: '#/session/' + encodeURIComponent(node.session_id), class: 'small', title: node.session_id }, shortId(node.session_id))],
      barClass: (node) => (/error|fail/i.test(node.status || '') ? 'wf-bar-error' : ''),
      barTitle: (node) => `${node.agent || ''}: ${node.started_at || '?'} → ${node.ended_at || 'not ended'} (${fmtDuration(node.duration_ms)})`,
      columns: [
        { label: 'Status', field: 'status', value: (node) => statusBadge(node.status) },
        { label: 'Duration', num: true, field: 'duration', value: (node) => fmtDuration(node.duration_ms) },
        { label: 'Tokens own', num: true, field: 'tokens', value: (node) => tokensNode(node.own) },
        { label: 'Tokens cumul.', num: true, field: 'cumulative-tokens', value: (node) => tokensNode(node.cumulative) },
        { label: 'Cost own', num: true, field: 'cost', value: (node) => usdNode(node.own.cost) },
        { label: 'Cost cumul.', num: true, field: 'cumulative-cost', value: (node) => usdNode(node.cumulative.cost) },
      ],
    });
  }

  const refresh = refresher(context, load);
  return { refresh, onCommit: (batch) => (batch.lagged || Array.from(batch.sessions).some((sessionId) => treeSessions.has(sessionId))) && refresh() };
}

function clipped(text, key, label, open) {
  if (!text) return null;
  return el('details', { 'data-key': key, open },
    el('summary', null, label, text.truncated ? muted(` (first ${fmtInt(text.text.length)} of ${fmtInt(text.chars)} characters)`) : null),
    el('pre', { class: 'clip' }, text.text));
}

function renderTimeline(messages, open) {
  if (!messages.length) return el('p', { class: 'muted', 'data-testid': 'timeline' }, 'No messages.');
  return el('ol', { class: 'timeline', 'data-testid': 'timeline' }, messages.map((message) => {
    const took = parseTime(message.completed_at) - parseTime(message.created_at);
    return el('li', { class: 'message' + (message.error ? ' has-error' : ''), 'data-message-id': message.id },
      el('div', { class: 'message-head' },
        el('strong', { class: 'role role-' + message.role }, message.role || 'message'),
        message.agent ? el('span', { class: 'tag' }, message.agent) : null,
        message.model ? muted(message.model) : null,
        timeNode(message.created_at, true),
        message.completed_at && message.created_at ? el('span', { class: 'small' }, 'took ' + fmtDuration(took)) : null,
        message.cost ? usdNode(message.cost) : null,
        message.error ? errorText('Error: ' + message.error) : null),
      el('ul', { class: 'parts' }, message.parts.map((part) => el('li', { 'data-part-id': part.id }, partNode(part, open)))));
  }));
}

function partNode(part, open) {
  const type = part.part_type || 'other';
  const key = (suffix) => part.id + suffix;
  if (type === 'text' && part.text) {
    return [el('div', { class: 'text' }, part.text.text), part.text.truncated ? muted(` … first ${fmtInt(part.text.text.length)} of ${fmtInt(part.text.chars)} characters`) : null];
  }
  if (type === 'reasoning' && part.text) return clipped(part.text, key(''), 'Reasoning', open.has(key('')));
  if (part.tool) {
    const tool = part.tool;
    const failed = tool.status === 'error';
    return el('div', { class: 'tool' + (failed ? ' tool-error' : '') },
      el('div', { class: 'tool-head' }, el('span', { class: 'tag' }, 'tool'), el('strong', null, tool.name || '?'), tool.title,
        failed ? errorText('ERROR') : statusBadge(tool.status), el('span', { class: 'small' }, fmtDuration(tool.duration_ms))),
      clipped(tool.input, key(':in'), 'input', open.has(key(':in'))),
      clipped(tool.output, key(':out'), failed ? 'error' : 'output', failed || open.has(key(':out'))));
  }
  if (part.step) {
    if (part.step.event === 'start') return el('div', { class: 'step small' }, '— step started —');
    const usage = part.step.usage;
    return el('div', { class: 'step small' }, `— step finished${part.step.reason ? ` (${part.step.reason})` : ''}: `,
      KINDS.map(([kind, label]) => `${label.toLowerCase()} ${fmtInt(usage[kind])}`).join(', '), ', cost ', usdNode(usage.cost), ' —');
  }
  return el('div', { class: 'muted small' }, type, part.text ? ': ' + part.text.text : '');
}

// ---------------------------------------------------------------- Usage

function viewUsage(context) {
  frame(context, 'Usage');
  const params = context.route.params;
  const groups = [['day', 'day'], ['model', 'model'], ['agent', 'agent'], ['project', 'project'], ['app', 'agent app']];
  const named = (key) => groups.find(([name]) => name === key)[1];
  const state = { group_by: groups.some(([name]) => name === params.get('group_by')) ? params.get('group_by') : 'day', since: params.get('since') || '', until: params.get('until') || '', rows: [] };
  // Radio buttons, not a menu: every grouping (spend per agent app among them) is one click away.
  const group = el('fieldset', { class: 'field choices', 'data-testid': 'usage-group' }, el('legend', null, 'Group by'),
    el('div', null, groups.map(([name, label]) => el('label', null,
      el('input', { type: 'radio', name: 'u-group', value: name, checked: name === state.group_by }), label))));
  const since = el('input', { id: 'u-since', type: 'date', value: state.since });
  const until = el('input', { id: 'u-until', type: 'date', value: state.until });
  const csv = el('button', { type: 'button', 'data-testid': 'usage-csv', disabled: true }, 'Download CSV');
  const control = (label, node) => el('div', { class: 'field' }, el('label', { for: node.id }, label), node);
  const form = el('form', { class: 'filters', 'aria-label': 'Grouping and period' },
    group, control('Since (UTC, inclusive)', since), control('Until (UTC, exclusive)', until),
    el('div', { class: 'field actions' }, el('button', { type: 'submit' }, 'Apply'), csv));
  const chartBox = el('div', null, loading());
  const tableBox = el('div', { class: 'table-scroll' });
  append(context.body, [form, section('Cost', chartBox), section('Rows', tableBox)]);
  const apply = (event) => {
    if (event) event.preventDefault();
    Object.assign(state, { group_by: group.querySelector('input:checked').value, since: since.value, until: until.value });
    history.replaceState(null, '', query('#/usage', { group_by: state.group_by === 'day' ? '' : state.group_by, since: state.since, until: state.until }));
    refresh();
  };
  form.addEventListener('submit', apply);
  group.addEventListener('change', () => apply());
  csv.addEventListener('click', () => downloadCsv(state));

  const refresh = refresher(context, async () => {
    const [answer] = await Promise.all([
      api(query('/api/usage', { group_by: state.group_by, since: state.since, until: state.until }), { signal: context.signal }),
      state.group_by === 'project' ? loadProjects(context.signal) : null,
    ]);
    state.rows = answer.rows;
    const day = state.group_by === 'day';
    const period = state.since || state.until ? ` from ${state.since || 'the start'} to ${state.until ? 'before ' + state.until : 'now'}` : ', all time';
    const bars = day ? answer.rows : answer.rows.slice().sort((a, b) => b.usage.cost - a.usage.cost).slice(0, 30);
    const label = (key) => (day ? key : state.group_by === 'app' ? appName(key) : state.group_by === 'project' ? projectLabel(key) : shortId(key));
    fill(chartBox, barChart(bars.map((row) => ({ label: label(row.key), value: row.usage.cost, title: `${row.key}: ${preciseUsd(row.usage.cost)}` })),
      `Cost in USD by ${named(state.group_by)}${period}${day ? '' : ', highest first, at most 30 bars'}; the table below has every row`));
    fill(tableBox, usageTable(answer.rows, state.group_by, `Usage by ${named(state.group_by)}${period}: finish steps, tokens by kind; the total is the API's`, answer.total, { 'data-testid': 'usage-table' }));
    csv.disabled = false;
  });
  return { refresh, onCommit: (batch) => (batch.sessions.size || batch.lagged) && refresh() };
}

/** A CSV field, quoted when it holds a comma, quote, line break or edge space (RFC 4180). */
const csvField = (value) => {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};

function downloadCsv(state) {
  const lines = [[state.group_by, 'sessions', 'steps', 'input', 'output', 'reasoning', 'cache_read', 'cache_write', 'cost_usd']]
    .concat(state.rows.map((row) => [row.key, row.sessions, row.steps, ...KINDS.map(([key]) => row.usage[key]), row.usage.cost]));
  const blob = new Blob([lines.map((line) => line.map(csvField).join(',')).join('\r\n') + '\r\n'], { type: 'text/csv;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const period = [state.since, state.until].filter(Boolean).join('_');
  const link = document.body.appendChild(el('a', { href: url, download: `ducktail-usage-by-${state.group_by}${period ? '-' + period : ''}.csv`, class: 'visually-hidden' }));
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------- Spans

function viewSpans(context) {
  frame(context, 'Spans');
  const params = context.route.params;
  const state = { service: params.get('service') || '', root_only: params.get('root_only') === 'true' ? 'true' : '', trace: params.get('trace') || '' };
  const collapsed = context.keep.collapsed || (context.keep.collapsed = new Set());
  const [servicesBox, tracesBox, traceBox] = [el('div', null, loading()), el('div', null, loading()), el('div')];
  append(context.body, [section('Services', servicesBox), section('Traces', tracesBox), traceBox]);
  const link = (changes) => query('#/spans', Object.assign({}, state, changes));

  const refresh = refresher(context, async () => {
    const signal = context.signal;
    const [services, traces, trace] = await Promise.all([
      api('/api/otel/services', { signal }),
      api(query('/api/otel/traces', { service: state.service, root_only: state.root_only, limit: 100 }), { signal }),
      state.trace ? api('/api/otel/traces/' + encodeURIComponent(state.trace), { signal }).catch((error) => (error instanceof ApiError ? error : Promise.reject(error))) : null,
    ]);
    fill(servicesBox, services.services.length ? table({
      caption: 'Services seen in any span',
      columns: ['Service', numCol('Spans'), numCol('Traces'), numCol('Errors'), 'First seen', 'Last seen'],
      rows: services.services.map((service) => [
        el('a', { href: link({ service: service.service_name, trace: '' }), 'aria-current': service.service_name === state.service && 'true' }, service.service_name),
        num(fmtInt(service.span_count)), num(fmtInt(service.trace_count)), num(errorCount(service.error_count)),
        timeNode(service.first_seen, true), timeNode(service.last_seen, true)]),
      attributes: { class: 'compact', 'data-testid': 'services-table' },
    }) : el('p', { class: 'notice', 'data-testid': 'spans-empty' }, 'No spans are followed: no service has sent a span. Start the daemon with ',
      code('--spans DIR'), ' (or set ', code('[sources.spans] path'), ') to index OpenTelemetry spans kept as Parquet files.'));
    fill(tracesBox,
      el('p', null, state.service ? ['Traces with a span of ', code(state.service), ' · ', el('a', { href: link({ service: '', trace: '' }) }, 'all services')] : 'All services', ' · ',
        el('a', { href: link({ root_only: state.root_only ? '' : 'true' }) }, state.root_only ? 'also traces without a root span' : 'only traces with a root span')),
      traces.traces.length ? el('div', { class: 'table-scroll' }, table({
        caption: 'Traces, newest first (at most 100)',
        columns: ['Trace', 'Root span', 'Started', numCol('Duration'), numCol('Spans'), numCol('Errors'), numCol('Services'), numCol('Orphans')],
        rows: traces.traces.map((summary) => ({
          attributes: { 'data-otel-trace-id': summary.trace_id, class: summary.trace_id === state.trace ? 'selected' : null },
          cells: [el('a', { href: link({ trace: summary.trace_id }), title: summary.trace_id, 'aria-current': summary.trace_id === state.trace && 'true' }, code(shortId(summary.trace_id))),
            summary.has_root ? [muted((summary.root_service || '') + ': '), summary.root_name] : muted('no root span'),
            timeNode(summary.start_time, true), num(fmtDuration(summary.duration_ns / 1e6)), num(fmtInt(summary.span_count)),
            num(errorCount(summary.error_count)), num(fmtInt(summary.service_count)), num(fmtInt(summary.orphan_count))],
        })),
        attributes: { class: 'compact', 'data-testid': 'otel-traces-table' },
      })) : el('p', { class: 'notice' }, state.service ? 'No traces for this service.' : 'No traces: no spans are followed, or none has arrived.'));
    if (!trace) fill(traceBox);
    else if (trace instanceof Error) fill(traceBox, section('Trace', el('p', { class: 'error-panel', role: 'alert' }, `Could not load trace ${state.trace}: ${trace.message}`)));
    else fill(traceBox, section('Trace ' + state.trace, spanWaterfall(trace)));
  });

  function spanWaterfall(answer) {
    const summary = answer.trace;
    return [
      el('p', { class: 'small' }, `${fmtInt(summary.span_count)} spans, ${fmtInt(summary.service_count)} services, ${fmtDuration(summary.duration_ns / 1e6)}`,
        summary.error_count ? [' · ', errorText(`${fmtInt(summary.error_count)} in error`)] : null,
        summary.orphan_count ? ` · ${fmtInt(summary.orphan_count)} orphans (their parent is in no file)` : null),
      waterfall({
        testid: 'span-waterfall',
        caption: 'Spans on one time axis; orphans (parent in no file) after the roots',
        roots: answer.spans,
        id: (span) => span.span_id,
        rowAttribute: 'data-span-id',
        collapsed,
        start: (span) => parseMicros(span.start_time),
        end: (span) => parseMicros(span.end_time),
        nameLabel: 'Span',
        name: (span) => [el('span', { class: 'wf-agent' }, span.name || '(unnamed)'), ' ', muted(span.service_name || ''), span.orphan ? el('span', { class: 'tag' }, 'orphan') : null],
        barClass: (span) => (span.status === 'ERROR' ? 'wf-bar-error' : ''),
        barTitle: (span) => `${span.name}: ${fmtDuration(span.duration_ns / 1e6)}`,
        columns: [
          { label: 'Kind', field: 'kind', value: (span) => span.kind || '—' },
          { label: 'Status', field: 'status', value: (span) => (span.status === 'ERROR' ? errorText('ERROR' + (span.status_message ? ': ' + span.status_message : '')) : span.status || '—') },
          { label: 'Duration', num: true, field: 'duration', value: (span) => fmtDuration(span.duration_ns / 1e6) },
        ],
        details: (span) => el('div', { class: 'span-details' }, el('h3', null, 'Attributes'), el('pre', { class: 'clip' }, JSON.stringify(span.attributes || {}, null, 2)),
          span.events && span.events.length ? [el('h3', null, 'Events'), el('pre', { class: 'clip' }, JSON.stringify(span.events, null, 2))] : null),
      }),
    ];
  }
  return { refresh, onCommit: (batch) => (batch.spans || batch.lagged) && refresh() };
}

// ---------------------------------------------------------------- System

function viewSystem(context) {
  frame(context, 'System');
  const box = append(context.body, [loading()]);
  const refresh = refresher(context, async () => {
    const [health, stats] = await Promise.all([api('/health/detailed', { signal: context.signal, accept: [503] }), api('/api/stats', { signal: context.signal })]);
    const pipeline = health.pipeline || {};
    const build = stats.build || {};
    const database = stats.opencode_db || {};
    const latency = stats.latency_ms || {};
    const machine = health.system || {};
    const problem = (text, fine) => (text ? errorText(text) : fine);
    const errorFiles = (stats.files_by_status || {}).error || 0;
    const listed = Array.isArray(stats.recent_errors) && stats.recent_errors.length;
    fill(box,
      section('Status',
        el('p', { class: 'status-line' }, el('span', { 'data-testid': 'system-status', class: 'badge ' + (health.status === 'healthy' ? 'badge-ok' : 'badge-error') }, health.status || 'unknown'),
          stats.ready ? 'ready: the startup catch-up has committed' : 'not ready: the startup catch-up is still running'),
        health.problems && health.problems.length
          ? el('ul', { class: 'problems', 'aria-label': 'Problems' }, health.problems.map((text) => el('li', null, errorText(text))))
          : el('p', { class: 'muted' }, 'No problems.')),
      el('div', { class: 'columns' },
        section('Pipeline', facts([
          ['Last commit', [pipeline.last_commit_age_ms === null || pipeline.last_commit_age_ms === undefined ? 'none since start' : fmtDuration(pipeline.last_commit_age_ms) + ' ago',
            stats.last_commit_unix_ms ? muted(` (${fmtLocal(stats.last_commit_unix_ms, true)})`) : null]],
          ['Backlog', `${fmtInt(stats.pending_files)} files pending, ${fmtInt(stats.batches_in_flight)} batches in flight`],
          ['Event → commit latency', latency.samples ? `p50 ${fmtDuration(latency.p50)} · p95 ${fmtDuration(latency.p95)} · p99 ${fmtDuration(latency.p99)} (${fmtInt(latency.samples)} samples)` : 'no samples yet'],
          ['p95, last minute', fmtDuration(pipeline.latency_p95_ms_last_minute)],
          ['Errors, last hour', fmtInt(pipeline.errors_last_hour)],
          ['Actor restarts', fmtInt(stats.actor_restarts)],
          ['Last file indexed', timeNode(stats.last_indexed_at, true)],
          ['opencode.db', [statusBadge(database.state), finite(database.records) ? ` ${fmtInt(database.records)} records` : '', database.error ? [' ', errorText(database.error)] : null]],
          ['File events', problem(stats.watch_problem, 'complete')],
          ['Commits', problem(stats.commit_failure, 'succeeding')],
        ])),
        section('Build and machine', facts([
          ['Version', 'ducktail ' + build.version],
          ['Commit', code(build.commit)],
          ['DuckDB', build.duckdb_version],
          ['Database', health.database ? code(health.database.path) : '—'],
          ['Database size', health.database ? `${fmtBytes(health.database.size_bytes)} + ${fmtBytes(health.database.wal_bytes)} WAL` : '—'],
          ['CPU', `${fmtPercent(machine.cpu_percent / 100)} machine · ${fmtPercent(machine.process_cpu_percent / 100)} ducktail`],
          ['Memory', `${fmtBytes(machine.process_memory_bytes)} ducktail · ${fmtBytes(machine.memory_available_bytes)} of ${fmtBytes(machine.memory_total_bytes)} free`],
          ['Disk', `${fmtBytes(machine.disk_free_bytes)} free of ${fmtBytes(machine.disk_total_bytes)}`],
          ['Metrics', el('a', { href: '/metrics' }, '/metrics (Prometheus text)')],
        ]))),
      el('div', { class: 'columns' },
        section('Files',
          table({
            caption: 'Source files per status',
            columns: ['Status', numCol('Files')],
            rows: Object.entries(stats.files_by_status || {}).map(([status, count]) => [status === 'error' ? errorText('error') : status, num(fmtInt(count), status)]),
            empty: 'No files indexed yet.',
            attributes: { class: 'compact', 'data-testid': 'files-by-status' },
          }),
          listed ? table({
            caption: 'Files in error, newest first',
            columns: ['Path', 'Reason', 'When'],
            rows: stats.recent_errors.map((error) => [code(error.path), error.message, error.at]),
            attributes: { class: 'compact', 'data-testid': 'error-files' },
          }) : el('p', { class: errorFiles ? 'notice' : 'muted', 'data-testid': 'error-files' }, errorFiles
            ? [errorText(`${fmtInt(errorFiles)} file${errorFiles === 1 ? ' is' : 's are'} in error. `), 'The API does not list them: ', code('ducktail status'), ' prints each with its path and reason.']
            : 'No file is in error.')),
        section('Rows per table', table({
          caption: 'Row counts',
          columns: ['Table', numCol('Rows')],
          rows: Object.entries(stats.tables || {}).map(([name, count]) => [code(name), num(fmtInt(count))]),
          attributes: { class: 'compact' },
        }))));
  });
  // Ages and machine figures change without commits: read them again every 10 s.
  const timer = setInterval(() => document.hidden || refresh(), 10000);
  context.signal.addEventListener('abort', () => clearInterval(timer));
  return { refresh, onCommit: () => refresh() };
}

function viewNotFound(context) {
  frame(context, 'Not found');
  append(context.body, [el('p', null, 'No view here. ', el('a', { href: '#/' }, 'Go to the overview.'))]);
  main.setAttribute('data-loaded', 'true');
  return { refresh() {}, onCommit() {} };
}

// ---------------------------------------------------------------- sign-in

let signingIn = false;

/** The token form: POST /api/login sets an HttpOnly cookie; the token is kept nowhere else. */
function showSignIn() {
  if (signingIn) return;
  signingIn = true;
  if (current) current.controller.abort();
  if (source) source.close();
  source = null;
  main.removeAttribute('data-loaded');
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const feedback = el('p', { class: 'error-text', role: 'alert' });
  const button = el('button', { type: 'submit' }, 'Sign in');
  const form = el('form', { class: 'signin', 'data-testid': 'login-form' },
    el('p', null, 'This daemon asks for its access token (', code('http.token'), '). It is sent once and kept in an HttpOnly cookie, never in the address or in local storage.'),
    el('div', { class: 'field' }, el('label', { for: 'token' }, 'Token'), input), button, feedback);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    feedback.textContent = '';
    try {
      await api('/api/login', { body: { token: input.value } });
      input.value = '';
      signingIn = false;
      router(false);
    } catch (error) {
      feedback.textContent = error instanceof SignInRequired ? error.message : 'Could not sign in: ' + error.message;
      button.disabled = false;
      input.focus();
    }
  });
  fill(main, el('h1', null, 'Sign in'), form);
  input.focus();
}

// ---------------------------------------------------------------- router

const views = { overview: viewOverview, sessions: viewSessions, session: viewSession, usage: viewUsage, spans: viewSpans, system: viewSystem };
let current = null;
/** Per-route UI state (collapsed waterfall rows) kept across refreshes and visits. */
const kept = new Map();

function parseRoute() {
  const hash = location.hash.slice(1);
  const mark = hash.indexOf('?');
  const params = new URLSearchParams(mark < 0 ? '' : hash.slice(mark + 1));
  const parts = (mark < 0 ? hash : hash.slice(0, mark)).split('/').filter(Boolean);
  if (!parts.length) return { name: 'overview', params };
  if (parts[0] === 'session' && parts.length > 1) return { name: 'session', id: decodeURIComponent(parts.slice(1).join('/')), params };
  return { name: parts.length === 1 && parts[0] !== 'session' && views[parts[0]] ? parts[0] : 'notfound', params };
}

function router(moveFocus) {
  if (current) current.controller.abort();
  signingIn = false;
  const route = parseRoute();
  const tab = route.name === 'session' ? 'sessions' : route.name;
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === tab) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.removeAttribute('data-loaded');
  document.title = 'ducktail';
  const controller = new AbortController();
  const key = route.name + ':' + (route.id || route.params.get('trace') || '');
  if (!kept.has(key)) kept.set(key, {});
  const context = { route, signal: controller.signal, keep: kept.get(key) };
  current = { controller, handle: null };
  current.handle = (views[route.name] || viewNotFound)(context);
  if (moveFocus && context.heading) context.heading.focus();
}

window.addEventListener('hashchange', () => router(true));

// ---------------------------------------------------------------- live updates

let source = null;
let connected = false;
let lostAt = null;
let needsRefresh = false;
let retryTimer = null;
let staleTimer = null;
let retryDelay = 1000;
let pending = null;
let debounce = null;

function setLive(state, text) {
  liveStatus.textContent = text;
  liveStatus.dataset.state = state;
  document.documentElement.dataset.live = state;
}

function markConnected() {
  connected = true;
  lostAt = null;
  retryDelay = 1000;
  clearTimeout(staleTimer);
  setLive('live', 'live');
  if (needsRefresh) {
    // Commits may have happened while the stream was down: read the view again.
    needsRefresh = false;
    if (current && !signingIn) current.handle.refresh();
  }
}

function markLost() {
  // Only the change from live (or the first failure) starts the clock: EventSource retries every
  // few seconds, and each failed try must not reset "stale since".
  if (!connected && lostAt !== null) return;
  connected = false;
  lostAt = Date.now();
  needsRefresh = true;
  setLive('reconnecting', 'reconnecting…');
  clearTimeout(staleTimer);
  staleTimer = setTimeout(() => connected || setLive('stale', 'stale since ' + clock(lostAt)), 5000);
}

/** Gathers commit notices for 250 ms, then lets the current view refresh what it shows. */
function queueCommit(notice) {
  pending = pending || { sessions: new Set(), spans: false, lagged: false };
  pending.lagged = pending.lagged || !!notice.lagged;
  (notice.sessions || []).forEach((id) => pending.sessions.add(id));
  // Commits of span files have batch ids from 2^62 up, of opencode.db from 2^63 up (docs/api.md).
  if (notice.batch_id >= 2 ** 62 && notice.batch_id < 2 ** 63) pending.spans = true;
  clearTimeout(debounce);
  debounce = setTimeout(() => {
    const batch = pending;
    pending = null;
    if (current && !signingIn) current.handle.onCommit(batch);
  }, 250);
}

/** Opens the page's one EventSource once the API has answered (so never before a sign-in). */
function ensureEvents() {
  if (source || signingIn || typeof EventSource === 'undefined') return;
  clearTimeout(retryTimer);
  const events = source = new EventSource('/api/events');
  events.addEventListener('open', markConnected);
  events.addEventListener('ready', () => connected || markConnected());
  events.addEventListener('commit', (event) => {
    try {
      queueCommit(JSON.parse(event.data));
    } catch (_) {
      queueCommit({ lagged: true });
    }
  });
  // Derived rows (traces, the rollups behind sessions and usage) land just after their commit:
  // read what the view shows again. An empty list means every session.
  events.addEventListener('derived', (event) => {
    try {
      const notice = JSON.parse(event.data);
      queueCommit(notice.sessions && notice.sessions.length ? notice : { lagged: true });
    } catch (_) {
      queueCommit({ lagged: true });
    }
  });
  events.addEventListener('lagged', () => queueCommit({ lagged: true }));
  events.addEventListener('error', () => {
    markLost();
    // EventSource retries by itself after a dropped connection but gives up after an HTTP error
    // answer (401, 503): then ask the API what is wrong before opening another.
    if (events.readyState === EventSource.CLOSED && source === events) {
      source = null;
      retryTimer = setTimeout(probe, retryDelay);
    }
  });
}

async function probe() {
  retryDelay = Math.min(retryDelay * 2, 15000);
  try {
    await api('/api/stats');
  } catch (error) {
    if (error instanceof SignInRequired) showSignIn();
    else retryTimer = setTimeout(probe, retryDelay);
  }
}

setLive('connecting', 'reconnecting…');
router(false);
