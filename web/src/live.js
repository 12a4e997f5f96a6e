// Following series as they grow, for the charts page and the workspace:
// one server-sent event stream (/api/live) for some series of some runs,
// each from the last step the page has of it, so only new points travel,
// however far apart the runs are.
import * as api from './api.js';

// Opens the stream for `names` of `runs`. `lastStep(run, name)` is the last
// step the page has of that series (null or undefined: none);
// `onMessage({series: [{run_id, name, x, t, y}]})` gets what each event
// brings. Returns the EventSource; close it to stop.
export function follow(runs, names, lastStep, onMessage) {
  const last = runs.flatMap((run) => names.map((name) => lastStep(run, name) ?? ''));
  const query = new URLSearchParams({ runs: runs.join(','), names: names.join(','), last: last.join(',') });
  const source = new EventSource(`/api/live?${query}`);
  source.onmessage = (message) => onMessage(api.parse(message.data));
  return source;
}
