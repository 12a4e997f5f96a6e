// The runs page: every run with its configuration (one column per key,
// nested keys as a.b) and the last value of the metrics you name, newest
// first. Click a header to sort by it (again to reverse), type to filter
// (any cell), tick runs to open them together in the workspace; a click on a
// row opens its charts. A forked run names its parent and the fork step.
// Filter, sort and metric columns are in the URL.
import * as api from './api.js';
import { commaList, el, formatTime, go, route } from './dom.js';
import { testHooks } from './hooks.js';
import { flatten, labeller } from './plot.js';

const FIXED = [
  { key: 'run_id', title: 'run', value: (r) => r.run_id },
  { key: 'name', title: 'name', value: (r) => r.name },
  { key: 'project', title: 'project', value: (r) => r.project },
  { key: 'status', title: 'status', value: (r) => r.status },
  { key: 'created', title: 'created', value: (r) => r.created_at_ms, text: (v) => formatTime(v) },
  { key: 'last_step', title: 'last step', value: (r) => r.last_step },
  { key: 'points', title: 'points', value: (r) => r.points },
  { key: 'tags', title: 'tags', value: (r) => r.tags.join(', ') },
];

export async function render(view) {
  const params = route().params;
  const state = {
    filter: params.get('filter') || '',
    sort: params.get('sort') || 'created',
    desc: params.get('desc') !== '0',
    metrics: commaList(params.get('metrics')),
    selected: new Set(),
  };
  const filter = el('input', { type: 'search', id: 'runs-filter', placeholder: 'filter by any column…', size: 30 });
  filter.value = state.filter;
  const metrics = el('input', { type: 'text', id: 'runs-metrics', placeholder: 'loss, eval/acc', size: 24 });
  metrics.value = state.metrics.join(', ');
  const open = el('button', { id: 'open-workspace', text: 'open selected in workspace' });
  const table = el('table', { id: 'runs-table' });
  const errors = el('div');
  view.append(el('div', { class: 'controls' },
    filter, el('label', {}, 'last value of', metrics), open), errors, el('div', { class: 'table-scroll' }, table));

  let runs = [];
  let columns = [];
  const saveRoute = () => {
    const p = { sort: state.sort, desc: state.desc ? 1 : 0 };
    if (state.filter) p.filter = state.filter;
    if (state.metrics.length) p.metrics = state.metrics.join(',');
    history.replaceState(null, '', `#/runs?${new URLSearchParams(p)}`);
  };

  async function load() {
    errors.replaceChildren();
    try {
      runs = (await api.get('runs', { metrics: state.metrics.join(',') })).runs;
    } catch (error) {
      errors.append(el('p', { class: 'error', text: String(error.message || error) }));
      runs = [];
    }
    const runLabel = labeller(runs);
    const configKeys = [...new Set(runs.flatMap((r) => Object.keys(flatten(r.config))))].sort();
    columns = [
      ...FIXED,
      { key: 'parent', title: 'forked from', value: (r) => (r.parent_run_id ? `${runLabel(r.parent_run_id)} @ ${r.fork_step ?? '?'}` : '') },
      ...configKeys.map((k) => ({ key: `config.${k}`, title: k, value: (r) => flatten(r.config)[k] })),
      ...state.metrics.map((m) => ({ key: `last.${m}`, title: `last ${m}`, value: (r) => r.last?.[m] })),
    ];
    draw();
  }

  function draw() {
    saveRoute();
    const needle = state.filter.trim().toLowerCase();
    const column = columns.find((c) => c.key === state.sort) || columns.find((c) => c.key === 'created');
    const cells = (run) => columns.map((c) => {
      const value = c.value(run);
      return c.text ? c.text(value) : value === undefined || value === null ? '' : String(value);
    });
    const shown = runs
      .filter((run) => !needle || cells(run).join(' ').toLowerCase().includes(needle))
      .sort((a, b) => compare(column.value(a), column.value(b), state.desc));
    const header = el('tr', {}, el('th', {}), ...columns.map((c) => {
      const th = el('th', { class: 'sortable', 'data-key': c.key, text: c.title + (c.key === column.key ? (state.desc ? ' ▾' : ' ▴') : '') });
      th.addEventListener('click', () => {
        state.desc = c.key === state.sort ? !state.desc : false;
        state.sort = c.key;
        draw();
      });
      return th;
    }));
    table.replaceChildren(header);
    const rows = [];
    for (const run of shown) {
      const box = el('input', { type: 'checkbox', 'data-run': run.run_id });
      box.checked = state.selected.has(run.run_id);
      box.addEventListener('click', (event) => event.stopPropagation());
      box.addEventListener('change', () => {
        if (box.checked) state.selected.add(run.run_id); else state.selected.delete(run.run_id);
      });
      const texts = cells(run);
      rows.push(texts);
      table.append(el('tr', { class: 'clickable', 'data-run': run.run_id, onclick: () => go('charts', { runs: run.run_id }) },
        el('td', {}, box), ...texts.map((text) => el('td', { text }))));
    }
    testHooks.runsTable = { columns: columns.map((c) => c.title), rows };
  }

  filter.addEventListener('input', () => { state.filter = filter.value; draw(); });
  metrics.addEventListener('change', async () => {
    state.metrics = commaList(metrics.value);
    await load();
  });
  open.addEventListener('click', () => {
    const chosen = runs.filter((r) => state.selected.has(r.run_id)).map((r) => r.run_id);
    if (chosen.length) go('workspace', { runs: chosen.join(',') });
  });
  await load();
}

// Numbers by value, then text, reversed when `desc`; empty cells last
// either way.
function compare(a, b, desc) {
  const empty = (v) => v === undefined || v === null || v === '';
  if (empty(a) || empty(b)) return empty(a) - empty(b);
  const order = typeof a === 'number' && typeof b === 'number'
    ? a - b
    : String(a).localeCompare(String(b), undefined, { numeric: true });
  return desc ? -order : order;
}
