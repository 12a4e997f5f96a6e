// The dashboard's API client: every call goes to the read-only JSON API of
// the steplake server that served this page.

import { showError } from './dom.js';
import { showLogin } from './login.js';

// The server writes NaN and ±Infinity as the strings "NaN", "Infinity" and
// "-Infinity" (JSON has no such numbers; null is SQL NULL): read them back
// as numbers.
const NON_FINITE = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

function revive(_key, value) {
  return typeof value === 'string' && value in NON_FINITE ? NON_FINITE[value] : value;
}

// JSON from the server, its non-finite numbers read back.
export function parse(text) {
  return JSON.parse(text, revive);
}

async function check(response) {
  const body = await response.text().then(parse).catch(() => ({}));
  if (response.status === 401) showLogin(body.error);
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const url = query.toString() ? `/api/${path}?${query}` : `/api/${path}`;
  return check(await fetch(url));
}

export async function sql(statement) {
  return check(await fetch('/api/sql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sql: statement }),
  }));
}

// Every run, or null after showing why not in `view` (a page then stops).
export async function runsOrError(view) {
  try {
    return (await get('runs')).runs;
  } catch (error) {
    showError(view, error);
    return null;
  }
}
