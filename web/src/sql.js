// The SQL box: a read-only statement on the server's session; the result as
// a table and, when it has a step column, as a chart of its numeric columns.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, el, route, showError } from './dom.js';

const SHOWN_ROWS = 1000;

export async function render(view) {
  const input = el('textarea', { spellcheck: 'false' });
  input.value = route().params.get('q') || 'SELECT run_id, name, count(*) AS points, max(step) AS last_step\nFROM scalars GROUP BY run_id, name ORDER BY run_id, name';
  const run = el('button', { text: 'Run (Ctrl+Enter)' });
  const output = el('div');
  view.append(input, el('div', { class: 'controls' }, run), output);
  const execute = async () => {
    output.replaceChildren(el('p', { class: 'note', text: 'running…' }));
    try {
      const started = performance.now();
      const result = await api.sql(input.value);
      output.replaceChildren(el('p', { class: 'note', text:
        `${result.row_count} rows in ${Math.round(performance.now() - started)} ms` + (result.truncated ? ' (first 10,000 returned)' : '') }));
      chart(output, result);
      table(output, result);
    } catch (error) {
      output.replaceChildren();
      showError(output, error);
    }
  };
  run.addEventListener('click', execute);
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) execute(); });
}

function table(output, result) {
  const names = result.columns.map((c) => c.name);
  const rows = result.rows.slice(0, SHOWN_ROWS).map((row) => el('tr', {}, ...names.map((n) => el('td', { text: format(row[n]) }))));
  output.append(el('table', {}, el('tr', {}, ...names.map((n) => el('th', { text: n }))), ...rows));
}

function format(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function chart(output, result) {
  const names = result.columns.map((c) => c.name);
  if (!names.includes('step')) return;
  const numeric = result.columns.filter((c) => c.name !== 'step' && /Int|Float|Decimal/.test(c.type)).map((c) => c.name);
  if (!numeric.length) return;
  const rows = [...result.rows].sort((a, b) => a.step - b.step);
  const data = [rows.map((r) => r.step), ...numeric.map((n) => rows.map((r) => r[n] ?? null))];
  const box = el('div', { class: 'chart' });
  output.append(box);
  new uPlot({
    width: Math.max(300, output.clientWidth - 2), height: 300,
    series: [{ label: 'step' }, ...numeric.map((n, k) => ({ label: n, stroke: COLORS[k % COLORS.length], width: 2 }))],
  }, data, box);
}
