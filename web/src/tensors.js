// The tensors page: one tensor's statistics over steps (L2 norm, mean, std)
// and its histogram over time as a heatmap: a column per step, rows of value
// on one scale for every step (each step's 64 bins over its own [min, max]
// moved onto the rows of the tensor's overall [min, max]; darker = more),
// with a step axis below and a value axis beside it.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, el, route, showError } from './dom.js';
import { testHooks } from './hooks.js';

export async function render(view) {
  const params = route().params;
  const runs = await api.runsOrError(view);
  if (!runs) return;
  const runSelect = el('select', {}, ...runs.map((r) => el('option', { value: r.run_id, text: r.name || r.run_id })));
  runSelect.value = params.get('run') || runs[0]?.run_id || '';
  const nameSelect = el('select');
  const lines = el('div', { class: 'chart' });
  const heatmap = el('canvas', { class: 'heatmap', id: 'heatmap' });
  const note = el('p', { class: 'note' });
  const errors = el('div');
  view.append(el('div', { class: 'controls' }, el('label', {}, 'run', runSelect), el('label', {}, 'tensor', nameSelect)),
    lines, el('h4', { text: 'histogram over steps' }), heatmap, note, errors);

  let plot = null;
  async function loadNames() {
    const { names } = await api.get('tensor_names', { run: runSelect.value });
    nameSelect.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
    if (params.get('name') && names.includes(params.get('name'))) nameSelect.value = params.get('name');
    if (!names.length) note.textContent = 'This run has no tensors.';
  }
  async function load() {
    errors.replaceChildren();
    if (!nameSelect.value) return;
    try {
      const stats = await api.get('tensor_stats', { run: runSelect.value, name: nameSelect.value });
      plot?.destroy();
      plot = new uPlot({
        width: Math.max(300, lines.clientWidth - 2), height: 300,
        // Steps, not times: uPlot's x scale is a time scale unless told.
        scales: { x: { time: false } },
        series: [{ label: 'step' },
          { label: 'l2', stroke: COLORS[0], width: 2 },
          { label: 'mean', stroke: COLORS[1], width: 2, scale: 'm' },
          { label: 'std', stroke: COLORS[2], width: 2, scale: 'm' }],
        axes: [{ label: 'step' }, { label: 'l2' }, { side: 1, scale: 'm', label: 'mean, std' }],
      }, [stats.step, stats.l2, stats.mean, stats.std], lines);
      testHooks.tensorPlot = { timeAxis: plot.scales.x.time, steps: stats.step.length };
      testHooks.heatmap = drawHeatmap(heatmap, stats);
      note.textContent = `${stats.step.length} steps.`;
    } catch (error) {
      showError(errors, error);
    }
  }
  runSelect.addEventListener('change', async () => { await loadNames(); await load(); });
  nameSelect.addEventListener('change', load);
  await loadNames();
  await load();
}

// Rows of the heatmap, and its margins for the axes (CSS pixels).
const ROWS = 64;
const MARGIN = { left: 72, right: 12, top: 8, bottom: 36 };
const WIDTH = 800;
const HEIGHT = 300;

// Draws the histograms of `stats` (step, min, max, hist per step) with a step
// axis and a value axis; returns what it drew, for the browser test.
function drawHeatmap(canvas, stats) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = WIDTH * ratio;
  canvas.height = HEIGHT * ratio;
  canvas.style.width = `${WIDTH}px`;
  canvas.style.height = `${HEIGHT}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, WIDTH, HEIGHT);
  const columns = stats.step.map((step, i) => ({ step, min: stats.min[i], max: stats.max[i], hist: stats.hist[i] || [] }))
    .filter((c) => Number.isFinite(c.min) && Number.isFinite(c.max));
  if (!columns.length) return { columns: 0 };
  const lo = Math.min(...columns.map((c) => c.min));
  const hi = Math.max(...columns.map((c) => c.max));
  const first = columns[0].step;
  const last = columns[columns.length - 1].step;
  const plot = { x: MARGIN.left, y: MARGIN.top, w: WIDTH - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom };
  // Each column is centred on its step, as wide as the steps are apart.
  const spacing = columns.length > 1 ? (last - first) / (columns.length - 1) : 1;
  const [x0, x1] = [first - spacing / 2, last + spacing / 2];
  const xOf = (step) => plot.x + ((step - x0) / (x1 - x0)) * plot.w;
  const rowHeight = (hi - lo) / ROWS;
  const rowOf = (value) => (hi === lo ? 0 : Math.max(0, Math.min(ROWS - 1, Math.floor((value - lo) / rowHeight))));
  // Each step's bins onto the shared rows, each bin's count split over the
  // rows its value range overlaps.
  const grid = columns.map((c) => {
    const rows = new Array(ROWS).fill(0);
    const width = (c.max - c.min) / (c.hist.length || 1);
    c.hist.forEach((count, b) => {
      if (!count) return;
      const from = c.min + b * width;
      const to = from + width;
      if (!(to > from) || hi === lo) { rows[rowOf(from)] += count; return; }
      for (let r = rowOf(from); r <= rowOf(to); r++) {
        const overlap = Math.min(to, lo + (r + 1) * rowHeight) - Math.max(from, lo + r * rowHeight);
        if (overlap > 0) rows[r] += (count * overlap) / width;
      }
    });
    return rows;
  });
  const top = Math.max(1, ...grid.flat());
  const scale = Math.log1p(top);
  const cellHeight = plot.h / ROWS;
  const columnWidth = Math.max(1, (spacing / (x1 - x0)) * plot.w);
  columns.forEach((c, i) => {
    const left = xOf(c.step) - columnWidth / 2;
    grid[i].forEach((count, row) => {
      if (!count) return;
      const shade = 255 - Math.round((230 * Math.log1p(count)) / scale);
      ctx.fillStyle = `rgb(${shade},${shade},255)`;
      ctx.fillRect(left, plot.y + plot.h - (row + 1) * cellHeight, columnWidth, cellHeight);
    });
  });
  // Axes: a frame, ticks with labels, and titles.
  ctx.strokeStyle = '#6b7280';
  ctx.fillStyle = '#374151';
  ctx.font = '11px sans-serif';
  ctx.strokeRect(plot.x, plot.y, plot.w, plot.h);
  const xTicks = ticks(first, last, 6).map((step) => Math.round(step)).filter((s, i, all) => all.indexOf(s) === i);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const step of xTicks) {
    const x = xOf(step);
    ctx.beginPath(); ctx.moveTo(x, plot.y + plot.h); ctx.lineTo(x, plot.y + plot.h + 4); ctx.stroke();
    ctx.fillText(String(step), x, plot.y + plot.h + 6);
  }
  ctx.fillText('step', plot.x + plot.w / 2, HEIGHT - 14);
  const yTicks = ticks(lo, hi, 5);
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const value of yTicks) {
    const y = plot.y + plot.h - (hi === lo ? 0 : ((value - lo) / (hi - lo)) * plot.h);
    ctx.beginPath(); ctx.moveTo(plot.x - 4, y); ctx.lineTo(plot.x, y); ctx.stroke();
    ctx.fillText(formatValue(value), plot.x - 6, y);
  }
  ctx.save();
  ctx.translate(12, plot.y + plot.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'center';
  ctx.fillText('value', 0, 0);
  ctx.restore();
  return { columns: columns.length, steps: [first, last], values: [lo, hi], xTicks, yTicks: yTicks.map(formatValue) };
}

// About `count` round numbers spanning [lo, hi].
function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function formatValue(value) {
  return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(1) : String(Number(value.toPrecision(4)));
}
