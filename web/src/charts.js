// The charts page: one series of one or several runs over step (or wall
// time), overlaid. The server downsamples to the chart's width keeping the
// min, max and last value of every bucket: the band between min and max
// shows every spike at any zoom. Dragging over the chart asks the server
// again for that step range, at full resolution once it is narrow enough;
// a double click zooms back out. Smoothing is TensorBoard's, with the raw
// line faint underneath. Markers show spikes and changepoints found by the
// SQL functions, the step at which a chosen condition emerged, and the
// events standing conditions fired (on the chart and listed below it).
// While not zoomed the chart follows its runs: the live stream brings the
// points written after those drawn, and only those. Keys: 0 or Esc zooms
// out, [ and ] change the smoothing.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, commaList, el, go, route, showError } from './dom.js';
import { bindChartKeys } from './keys.js';
import { follow } from './live.js';
import { appendTail, drawEmergence, drawEvents, drawMarks, labeller, seriesData, seriesOptions, themedAxes } from './plot.js';
import { testHooks } from './hooks.js';

export async function render(view) {
  const params = route().params;
  const state = {
    runs: commaList(params.get('runs')),
    name: params.get('name') || '',
    x: params.get('x') || 'step',
    weight: Number(params.get('smoothing') || 0.6),
    logY: params.get('log') === '1',
    markers: params.get('markers') !== '0',
    emergence: { op: params.get('op') || '>', threshold: params.get('threshold') || '', hold: params.get('hold') || '1' },
    range: null,
    response: null,
    marks: {},
    emerged: {},
    events: [],
  };
  const allRuns = await api.runsOrError(view);
  if (!allRuns) return;
  if (!state.runs.length && allRuns.length) state.runs = [allRuns[0].run_id];
  const runLabel = labeller(allRuns);

  const saveRoute = () => {
    const p = { runs: state.runs.join(','), name: state.name, x: state.x, smoothing: state.weight, log: state.logY ? 1 : 0, markers: state.markers ? 1 : 0 };
    if (state.emergence.threshold !== '') Object.assign(p, state.emergence);
    history.replaceState(null, '', `#/charts?${new URLSearchParams(p)}`);
  };

  // Run picker.
  const picker = el('div', { class: 'runs-picker' });
  for (const run of allRuns) {
    const box = el('input', { type: 'checkbox' });
    box.checked = state.runs.includes(run.run_id);
    box.addEventListener('change', async () => {
      state.runs = allRuns.filter((r, i) => picker.querySelectorAll('input')[i].checked).map((r) => r.run_id);
      state.range = null;
      await loadNames();
      await load();
    });
    picker.append(el('label', {}, box, `${run.name || run.run_id} (${run.status})`));
  }

  // Controls.
  const nameSelect = el('select', { id: 'series-name' });
  nameSelect.addEventListener('change', () => { state.name = nameSelect.value; state.range = null; load(); });
  const axis = el('select', {}, el('option', { value: 'step', text: 'step' }), el('option', { value: 'wall_time', text: 'wall time' }));
  axis.value = state.x;
  axis.addEventListener('change', () => { state.x = axis.value; state.range = null; load(); });
  const slider = el('input', { type: 'range', min: 0, max: 0.99, step: 0.01 });
  slider.value = state.weight;
  const sliderValue = el('span', { text: state.weight.toFixed(2) });
  slider.addEventListener('input', () => { state.weight = Number(slider.value); sliderValue.textContent = state.weight.toFixed(2); saveRoute(); draw(); });
  const logBox = el('input', { type: 'checkbox' });
  logBox.checked = state.logY;
  logBox.addEventListener('change', () => { state.logY = logBox.checked; draw(); });
  const markerBox = el('input', { type: 'checkbox' });
  markerBox.checked = state.markers;
  markerBox.addEventListener('change', () => { state.markers = markerBox.checked; loadMarkers(); });
  const op = el('select', {}, ...['>', '>=', '<', '<='].map((o) => el('option', { value: o, text: o })));
  op.value = state.emergence.op;
  const threshold = el('input', { type: 'number', step: 'any', size: 6, placeholder: 'threshold' });
  threshold.value = state.emergence.threshold;
  const hold = el('input', { type: 'number', min: 1, size: 4 });
  hold.value = state.emergence.hold;
  const findEmergence = el('button', { text: 'find emergence' });
  findEmergence.addEventListener('click', () => {
    state.emergence = { op: op.value, threshold: threshold.value, hold: hold.value };
    loadEmergence();
  });
  const info = el('span', { class: 'note' });
  const chartBox = el('div', { class: 'chart', id: 'chart' });
  const errors = el('div');
  const eventList = el('div', { id: 'events' });
  view.append(
    picker,
    el('div', { class: 'controls' },
      el('label', {}, 'series', nameSelect),
      el('label', {}, 'x', axis),
      el('label', {}, 'smoothing', slider, sliderValue),
      el('label', {}, logBox, 'log y'),
      el('label', {}, markerBox, 'spikes & changepoints'),
      el('label', {}, 'emerged when value', op, threshold, 'for', hold, 'points', findEmergence)),
    info, chartBox, errors, eventList,
    el('p', { class: 'note', text: 'Drag to zoom (fetched again at full resolution), double-click, 0 or Esc to zoom out; [ and ] change the smoothing. The shaded band spans the min and max of each bucket.' }));

  async function loadNames() {
    nameSelect.replaceChildren();
    if (!state.runs.length) return;
    const { names } = await api.get('names', { runs: state.runs.join(',') });
    for (const name of names) nameSelect.append(el('option', { value: name, text: name }));
    if (!names.includes(state.name)) state.name = names[0] || '';
    nameSelect.value = state.name;
  }

  // Answers to older requests (a live refresh overtaken by a zoom) are dropped.
  let latest = 0;
  async function load(quiet = false) {
    if (!state.runs.length || !state.name) return;
    saveRoute();
    const width = Math.max(200, Math.floor(chartBox.clientWidth || 1000));
    const ticket = ++latest;
    try {
      const started = performance.now();
      const response = await api.get('series', {
        runs: state.runs.join(','), name: state.name, x: state.x, width,
        start: state.range?.[0], end: state.range?.[1],
      });
      if (ticket !== latest) return;
      state.response = response;
      testHooks.lastSeries = state.response;
      testHooks.fetchMs = performance.now() - started;
      info.textContent = `${state.response.points.toLocaleString()} points in steps ${state.response.start ?? '–'}…${state.response.end ?? '–'}`
        + (state.response.downsampled ? `, downsampled to ${width} buckets (min, max, last)` : ', full resolution');
      draw();
      followRuns();
      await loadEvents();
      if (!quiet) { await loadMarkers(); if (state.emergence.threshold !== '') await loadEmergence(); }
    } catch (error) {
      errors.replaceChildren();
      showError(errors, error);
    }
  }

  async function loadMarkers() {
    state.marks = {};
    if (state.markers && state.x === 'step') {
      for (const run of state.runs) {
        state.marks[run] = await api.get('markers', { run, name: state.name });
      }
    }
    plot?.redraw(false, false);
  }

  // Events of the shown runs: every series in the list, this series on the chart.
  async function loadEvents() {
    const { events } = await api.get('events', { runs: state.runs.join(',') });
    state.events = events;
    testHooks.events = events;
    eventList.replaceChildren();
    if (events.length) {
      const rows = events.slice(-100).reverse().map((e) => el('tr', {},
        el('td', { text: String(e.step) }), el('td', { text: runLabel(e.run_id) }), el('td', { text: e.series }),
        el('td', { text: e.label }), el('td', { text: String(e.value) })));
      eventList.append(
        el('h3', { text: `Events (${events.length})` }),
        el('table', { class: 'events' },
          el('tr', {}, ...['step', 'run', 'series', 'condition', 'value'].map((h) => el('th', { text: h }))),
          ...rows));
    }
    plot?.redraw(false, false);
  }

  async function loadEmergence() {
    state.emerged = {};
    saveRoute();
    if (state.emergence.threshold === '') return;
    for (const run of state.runs) {
      const { step } = await api.get('emergence', { run, name: state.name, ...state.emergence });
      state.emerged[run] = step;
    }
    info.dataset.emerged = JSON.stringify(state.emerged);
    plot?.redraw(false, false);
  }

  let plot = null;
  let plotKey = null;
  function draw() {
    const response = state.response;
    if (!response) return;
    const data = seriesData(response, state.weight);
    // Same runs and axes: new data into the same chart (keeps a drag going).
    const key = JSON.stringify([response.runs.map((r) => r.run_id), state.x, state.logY]);
    if (plot && key === plotKey) {
      plot.setData(data);
      return;
    }
    plotKey = key;
    const { series, bands } = seriesOptions(response, runLabel, state.x === 'step' ? 'step' : 'time');
    testHooks.legend = series.map((s) => s.label);
    const options = {
      width: Math.max(300, chartBox.clientWidth - 2),
      height: 420,
      series,
      bands,
      // Wall times come in milliseconds.
      ms: 1,
      scales: { x: { time: state.x === 'wall_time' }, y: state.logY ? { distr: 3 } : {} },
      axes: themedAxes(),
      cursor: { drag: { x: true, y: false, setScale: state.x !== 'step' } },
      hooks: {
        setSelect: [(u) => {
          if (state.x !== 'step' || u.select.width < 5) return;
          const lo = Math.floor(u.posToVal(u.select.left, 'x'));
          const hi = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x'));
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          state.range = [lo, hi];
          load();
        }],
        draw: [(u) => { drawMarkers(u); testHooks.xTicks = u.axes[0]._values; testHooks.drawnAt = performance.now(); testHooks.draws++; }],
      },
    };
    plot?.destroy();
    plot = new uPlot(options, data, chartBox);
    plot.over.addEventListener('dblclick', () => { state.range = null; load(); });
  }

  function drawMarkers(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    testHooks.changepointsDrawn = {};
    state.runs.forEach((run, k) => {
      const color = COLORS[k % COLORS.length];
      const marks = state.marks[run];
      if (marks) testHooks.changepointsDrawn[run] = drawMarks(u, marks, color);
      if (state.x === 'step') drawEvents(u, state.events.filter((e) => e.run_id === run && e.series === state.name));
      const emerged = state.emerged[run];
      if (emerged !== undefined && emerged !== null && state.x === 'step') drawEmergence(u, emerged, '#059669');
    });
    ctx.restore();
  }

  window.addEventListener('resize', () => plot?.setSize({ width: Math.max(300, chartBox.clientWidth - 2), height: 420 }));
  // Axes take the theme's colours when drawn: draw again when it changes.
  const theme = matchMedia('(prefers-color-scheme: dark)');
  const onTheme = () => { plotKey = null; draw(); };
  theme.addEventListener('change', onTheme);

  // Live (not while zoomed): the stream brings each run's points after
  // those drawn; a chart that has gathered many asks again, downsampled.
  let source = null;
  testHooks.live = { received: 0, following: null };
  function followRuns() {
    source?.close();
    source = null;
    testHooks.live.following = null;
    const response = state.response;
    if (state.range || !response || !state.name || !document.body.contains(chartBox)) return;
    const lastStep = (run) => response.runs.find((r) => r.run_id === run)?.last_step;
    source = follow(state.runs, [state.name], lastStep, ({ series }) => {
      if (state.range || state.response !== response) return;
      for (const s of series) {
        testHooks.live.received += s.x.length;
        appendTail(response, s, state.x === 'wall_time');
      }
      const width = Math.max(200, Math.floor(chartBox.clientWidth || 1000));
      if (response.runs.some((r) => r.x.length > 4 * width)) load(true);
      else { draw(); loadEvents(); }
    });
    testHooks.live.following = state.name;
  }
  const unbindKeys = bindChartKeys(() => { if (state.range) { state.range = null; load(); } }, slider);

  await loadNames();
  await load();
  if (!state.runs.length) view.append(el('p', { text: 'No runs yet. Start a trainer that logs to this server.' }));
  return () => { source?.close(); unbindKeys(); theme.removeEventListener('change', onTheme); };
}

export function open(runs, name) {
  go('charts', { runs: runs.join(','), name });
}
