// The SQL box: a read-only statement on the server's session; the result as
// a table and, when it has a step column, as a chart of its numeric columns
// over step. The statement run last is in the URL, so a link runs it again.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, el, route, showError } from './dom.js';
import { testHooks } from './hooks.js';
import { themedAxes } from './plot.js';

const SHOWN_ROWS = 1000;

export async function render(view) {
  const input = el('textarea', { spellcheck: 'false' });
  input.value = route().params.get('q') || 'SELECT run_id, name, count(*) AS points, max(step) AS last_step\nFROM scalars GROUP BY run_id, name ORDER BY run_id, name';
  const run = el('button', { text: 'Run (Ctrl+Enter)' });
  const output = el('div');
  view.append(input, el('div', { class: 'controls' }, run), output);
  const execute = async () => {
    output.replaceChildren(el('p', { class: 'note', text: 'running…' }));
    history.replaceState(null, '', `#/sql?${new URLSearchParams({ q: input.value })}`);
    testHooks.sql = null;
    try {
      const started = performance.now();
      const result = await api.sql(input.value);
      output.replaceChildren(el('p', { class: 'note', text:
        `${result.row_count} rows in ${Math.round(performance.now() - started)} ms` + (result.truncated ? ' (first 10,000 returned)' : '') }));
      const plotted = chart(output, result);
      const shown = table(output, result);
      testHooks.sql = { rowCount: result.row_count, shownRows: shown.rows.length - 1, chart: plotted };
    } catch (error) {
      output.replaceChildren();
      showError(output, error);
      testHooks.sql = { error: error.message };
    }
  };
  run.addEventListener('click', execute);
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) execute(); });
  if (route().params.get('q')) await execute();
}

function table(output, result) {
  const names = result.columns.map((c) => c.name);
  const rows = result.rows.slice(0, SHOWN_ROWS).map((row) => el('tr', {}, ...names.map((n) => el('td', { text: format(row[n]) }))));
  const shown = el('table', {}, el('tr', {}, ...names.map((n) => el('th', { text: n }))), ...rows);
  output.append(shown);
  return shown;
}

function format(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// The result's numeric columns over its step column (steps, not times),
// when it has both; returns what was drawn: {series, points, max}.
function chart(output, result) {
  const names = result.columns.map((c) => c.name);
  if (!names.includes('step')) return null;
  const numeric = result.columns.filter((c) => c.name !== 'step' && /Int|Float|Decimal/.test(c.type)).map((c) => c.name);
  if (!numeric.length) return null;
  const rows = [...result.rows].sort((a, b) => a.step - b.step);
  const data = [rows.map((r) => r.step), ...numeric.map((n) => rows.map((r) => r[n] ?? null))];
  const box = el('div', { class: 'chart' });
  output.append(box);
  const plot = new uPlot({
    width: Math.max(300, output.clientWidth - 2), height: 300,
    series: [{ label: 'step' }, ...numeric.map((n, k) => ({ label: n, stroke: COLORS[k % COLORS.length], width: 2 }))],
    scales: { x: { time: false } },
    axes: themedAxes(),
  }, data, box);
  const finite = data.slice(1).flat().filter((v) => Number.isFinite(v));
  return { series: numeric, points: rows.length, max: Math.max(...finite), timeAxis: plot.scales.x.time };
}
