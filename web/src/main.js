// steplake's dashboard: a hash router over five pages (runs, workspace,
// charts, tensors, SQL). Each page module renders into <main> and reads the server's
// read-only JSON API (api.js).
import './hooks.js';
import * as runs from './runs.js';
import * as workspace from './workspace.js';
import * as charts from './charts.js';
import * as tensors from './tensors.js';
import * as sql from './sql.js';
import { route } from './dom.js';

const PAGES = { runs, workspace, charts, tensors, sql };
let cleanup = null;

async function show() {
  const { view } = route();
  const page = PAGES[view] || runs;
  for (const link of document.querySelectorAll('header nav a')) {
    link.classList.toggle('active', link.dataset.view === view);
  }
  if (typeof cleanup === 'function') cleanup();
  const main = document.getElementById('view');
  main.replaceChildren();
  cleanup = await page.render(main);
}

window.addEventListener('hashchange', show);
show();
