// The runs page: every run, filterable, newest first; a click opens its
// charts.
import * as api from './api.js';
import { el, formatTime, go } from './dom.js';

export async function render(view) {
  const filter = el('input', { type: 'search', placeholder: 'filter by project, name, status, tag…', size: 40 });
  const table = el('table', { id: 'runs-table' });
  view.append(el('div', { class: 'controls' }, filter), table);
  const runs = await api.runsOrError(view);
  if (!runs) return;
  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = runs.filter((run) =>
      !needle || [run.run_id, run.project, run.name, run.status, ...run.tags].join(' ').toLowerCase().includes(needle));
    table.replaceChildren(el('tr', {}, ...['run', 'project', 'name', 'status', 'created', 'last step', 'points', 'tags'].map((h) => el('th', { text: h }))));
    for (const run of shown) {
      table.append(el('tr', { class: 'clickable', 'data-run': run.run_id, onclick: () => go('charts', { runs: run.run_id }) },
        el('td', { text: run.run_id }),
        el('td', { text: run.project }),
        el('td', { text: run.name }),
        el('td', { text: run.status }),
        el('td', { text: formatTime(run.created_at_ms) }),
        el('td', { text: run.last_step ?? '' }),
        el('td', { text: run.points }),
        el('td', { text: run.tags.join(', ') })));
    }
  };
  filter.addEventListener('input', draw);
  draw();
}
