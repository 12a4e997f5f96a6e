// What the charts page and the workspace's panels share: a /api/series
// response as uPlot data and series (per run: the faint raw line, the min and
// max of each bucket as a shaded band, and the smoothed line), and how runs
// are named.
import uPlot from 'uplot';
import { COLORS } from './dom.js';
import { smooth } from './smooth.js';

// The response's runs as one uPlot data table (x, then per run: last, lo,
// hi, smoothed last), then the columns of each of the `extra` tables (each
// [x, ...columns]) on the same x.
export function seriesData(response, weight, extra = []) {
  const tables = response.runs.map((r) => [r.x, r.last, r.lo, r.hi, smooth(r.last, weight)]).concat(extra);
  return tables.length ? uPlot.join(tables) : [[]];
}

// New points of one series from the live stream (`{run_id, x: steps, t:
// wall times, y}`) joined to a /api/series response: those after the run's
// last step, each a bucket of one point, at its step or (`byTime`) its wall
// time. Returns the steps added.
export function appendTail(response, { run_id: runId, x, t, y }, byTime = false) {
  let run = response.runs.find((r) => r.run_id === runId);
  if (!run) {
    run = { run_id: runId, x: [], last: [], lo: [], hi: [], last_step: null };
    if (byTime) run.step = [];
    response.runs.push(run);
  }
  const added = [];
  x.forEach((step, i) => {
    if (run.last_step !== null && step <= run.last_step) return;
    run.x.push(byTime ? t[i] : step);
    run.step?.push(step);
    run.last.push(y[i]); run.lo.push(y[i]); run.hi.push(y[i]);
    run.last_step = step;
    added.push(step);
  });
  response.points += added.length;
  if (added.length) response.end = Math.max(response.end ?? -Infinity, ...added);
  return added;
}

// The steps a range of wall times [from, to] (ms) covers in a response
// asked for over wall time (each run's `step` gives its x's first step):
// [first, last], or null when no point falls in it.
export function stepsWithin(response, from, to) {
  let first = Infinity;
  let last = -Infinity;
  for (const run of response.runs) {
    run.x.forEach((time, i) => {
      if (time < from || time > to) return;
      first = Math.min(first, run.step[i]);
      last = Math.max(last, i + 1 < run.x.length ? run.step[i + 1] - 1 : run.last_step);
    });
  }
  return first <= last ? [first, last] : null;
}

// The step at which a condition emerged in a run, as a solid line in
// `color` labelled with the step (on `u`, inside its clipped plot area).
export function drawEmergence(u, step, color) {
  const ctx = u.ctx;
  const { top, height } = u.bbox;
  const x = u.valToPos(step, 'x', true);
  ctx.save();
  plainPen(ctx);
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = 2 * devicePixelRatio;
  ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
  ctx.font = `${12 * devicePixelRatio}px sans-serif`;
  ctx.fillText(`emerged at ${step}`, x + 4, top + 14 * devicePixelRatio);
  ctx.restore();
}

// uPlot's series and bands for the response's runs, labelled by
// `runLabel`, coloured by `colorOf(run_id, k)` (default: the k-th colour).
export function seriesOptions(response, runLabel, xLabel, colorOf = (_run, k) => COLORS[k % COLORS.length]) {
  const series = [{ label: xLabel }];
  const bands = [];
  response.runs.forEach((r, k) => {
    const color = colorOf(r.run_id, k);
    const base = 1 + 4 * k;
    const label = runLabel(r.run_id);
    series.push(
      { label: `${label} raw`, stroke: color + '55', width: 1, points: { show: false } },
      { label: `${label} min`, stroke: color + '44', width: 1, points: { show: false } },
      { label: `${label} max`, stroke: color + '44', width: 1, points: { show: false } },
      { label, stroke: color, width: 2, points: { show: false } });
    bands.push({ series: [base + 2, base + 1], fill: color + '33' });
  });
  return { series, bands };
}

// How a run is named on charts and in lists: its name, with the start of its
// id when another run has the same name; its id when it has none.
export function labeller(runs) {
  const counts = new Map();
  for (const r of runs) if (r.name) counts.set(r.name, (counts.get(r.name) || 0) + 1);
  const labels = new Map(runs.map((r) => [r.run_id,
    !r.name ? r.run_id : counts.get(r.name) > 1 ? `${r.name} (${r.run_id.slice(0, 8)})` : r.name]));
  return (runId) => labels.get(runId) ?? runId;
}

// Axes whose lines and labels follow the page's light or dark theme (the
// CSS variables --axis and --grid).
export function themedAxes(count = 2) {
  const style = getComputedStyle(document.documentElement);
  const stroke = style.getPropertyValue('--axis').trim() || '#1d2330';
  const grid = style.getPropertyValue('--grid').trim() || '#0000001a';
  return Array.from({ length: count }, () => ({ stroke, grid: { stroke: grid }, ticks: { stroke: grid } }));
}

// The response with its runs replaced by groups of them (`groupOf(run_id)`
// names a run's group): per x, the mean of the group's runs' last values
// as the line and the least min to the greatest max as the band.
export function grouped(response, groupOf) {
  const members = new Map();
  for (const run of response.runs) {
    const group = groupOf(run.run_id);
    if (!members.has(group)) members.set(group, []);
    members.get(group).push(run);
  }
  const runs = [...members.keys()].sort().map((group) => {
    const of = members.get(group);
    const table = uPlot.join(of.map((r) => [r.x, r.last, r.lo, r.hi]));
    const x = table[0];
    const mean = [];
    const lo = [];
    const hi = [];
    for (let i = 0; i < x.length; i++) {
      let sum = 0;
      let n = 0;
      let least = Infinity;
      let most = -Infinity;
      for (let m = 0; m < of.length; m++) {
        const [last, min, max] = [table[1 + 3 * m][i], table[2 + 3 * m][i], table[3 + 3 * m][i]];
        if (Number.isFinite(last)) { sum += last; n++; }
        if (Number.isFinite(min)) least = Math.min(least, min);
        if (Number.isFinite(max)) most = Math.max(most, max);
      }
      mean.push(n ? sum / n : null);
      lo.push(least === Infinity ? null : least);
      hi.push(most === -Infinity ? null : most);
    }
    return { run_id: group, runs: of.length, x, last: mean, lo, hi, last_step: Math.max(-1, ...of.map((r) => r.last_step ?? -1)) };
  });
  return { ...response, runs };
}

// Nested configuration keys as one level: {model: {width: 8}} → {'model.width': 8}.
export function flatten(object, prefix = '', out = {}) {
  for (const [key, value] of Object.entries(object || {})) {
    if (value && typeof value === 'object' && !Array.isArray(value)) flatten(value, `${prefix}${key}.`, out);
    else out[`${prefix}${key}`] = Array.isArray(value) ? JSON.stringify(value) : value;
  }
  return out;
}

// A solid pen and left-aligned text: uPlot leaves the canvas with the last
// series' dash and the axes' text alignment.
function plainPen(ctx) {
  ctx.setLineDash([]);
  ctx.textAlign = 'left';
  ctx.textBaseline = 'alphabetic';
}

// The events standing conditions fired, as flagged vertical lines at their
// steps on `u` (inside its plot area, which the caller has clipped to).
export function drawEvents(u, events) {
  const ctx = u.ctx;
  const { top, height } = u.bbox;
  ctx.save();
  plainPen(ctx);
  ctx.strokeStyle = '#ea580c';
  ctx.fillStyle = '#ea580c';
  ctx.lineWidth = 1.5 * devicePixelRatio;
  ctx.font = `${11 * devicePixelRatio}px sans-serif`;
  for (const event of events) {
    const x = u.valToPos(event.step, 'x', true);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    ctx.fillText(`⚑ ${event.label}`, x + 3, top + height - 6 * devicePixelRatio);
  }
  ctx.restore();
}

// A series' spikes (red dots at their values) and changepoints (dashed
// lines in `color`, thinned) from /api/markers, on `u` (inside its plot
// area, which the caller has clipped to); returns the changepoint lines drawn.
export function drawMarks(u, marks, color) {
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.setLineDash([4, 4]);
  const shown = thinned(marks.changepoints.map((step) => u.valToPos(step, 'x', true)), left, width);
  for (const x of shown) {
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.fillStyle = '#dc2626';
  marks.spikes.step.forEach((step, i) => {
    const value = marks.spikes.value[i];
    if (value === null || !Number.isFinite(value)) return;
    ctx.beginPath(); ctx.arc(u.valToPos(step, 'x', true), u.valToPos(value, 'y', true), 4 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill();
  });
  ctx.restore();
  return shown.length;
}

// At most MAX_CHANGEPOINTS of the changepoint positions `xs` (canvas
// pixels), none closer than a tenth of the plot's width to the last one kept:
// on a smooth rise the detector reports one changepoint after another, and
// ten dashed lines in a few hundred steps hide the curve.
const MAX_CHANGEPOINTS = 5;
function thinned(xs, left, width) {
  const gap = width / 10;
  const kept = [];
  for (const x of xs.filter((x) => x >= left && x <= left + width).sort((a, b) => a - b)) {
    if (kept.length === MAX_CHANGEPOINTS) break;
    if (!kept.length || x - kept[kept.length - 1] >= gap) kept.push(x);
  }
  return kept;
}
