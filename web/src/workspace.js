// The workspace: every metric of the selected runs at once, one panel per
// metric, grouped into sections by name prefix (`train/`, `eval/`, …; names
// without one under "other"). Sections collapse; a regular expression
// narrows the panels. A panel asks the server for its series only once it
// scrolls into view, so hundreds of metrics cost what the visible ones cost.
// Each panel keeps the charts page's min/max/last downsampling; a drag zooms
// every panel to the same step range (fetched again, at full resolution once
// narrow enough), a double click zooms back out. The x axis is the step or
// the wall time, shared by every panel. Each panel has its own settings:
// smoothing, log y, y range, the step at which a condition emerged, and the
// predicted course to a final step with its interval (a dashed extension,
// from the loss-curve fit). The view (runs, filter, collapsed sections,
// zoom, axis, smoothing, every panel's settings) lives in the URL, so a
// link reproduces it. While not zoomed, the drawn panels follow their runs:
// one server-sent event stream (/api/live) brings the points written after
// those drawn, and only those. Events of standing conditions are flagged on
// their series' panels; spikes and changepoints on request. Markers,
// emergence and predictions are placed by step, so they show over steps.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, commaList, el, formatTime, route, showError } from './dom.js';
import { testHooks } from './hooks.js';
import { bindChartKeys } from './keys.js';
import { follow as followSeries } from './live.js';
import {
  appendTail, drawEmergence, drawEvents, drawMarks, flatten, grouped, labeller, seriesData, seriesOptions, stepsWithin, themedAxes,
} from './plot.js';

const OTHER = 'other';
const PANEL_HEIGHT = 200;
// While live points arrive, a panel's prediction is fitted again at most
// this often.
const PREDICTION_REFIT_MS = 2000;

// Settings per panel in the URL: `name~field~field,name~field,…`.
function panelSettings(text, read) {
  return new Map(commaList(text).map((entry) => {
    const [name, ...fields] = entry.split('~');
    return [name, read(fields)];
  }));
}
function panelSettingsText(settings, write) {
  return [...settings].map(([name, value]) => [name, ...write(value)].join('~')).join(',');
}
const optionalNumber = (text) => (text === '' || text === undefined ? null : Number(text));

// "> 0.9 for 5" (the value is above 0.9 for 5 points running; "for N" may
// be left out): the condition whose first step a panel marks.
const EMERGENCE = /^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(?:for\s+(\d+)(?:\s+points?)?)?\s*$/i;
function parseEmergence(text) {
  const match = EMERGENCE.exec(text);
  if (!match) return null;
  return { op: match[1], threshold: Number(match[2]), hold: Math.max(1, Number(match[3] || 1)) };
}
const emergenceText = ({ op, threshold, hold }) => `${op} ${threshold} for ${hold}`;

export async function render(view) {
  const params = route().params;
  const state = {
    runs: commaList(params.get('runs')),
    filter: params.get('filter') || '',
    collapsed: new Set(commaList(params.get('collapsed'))),
    // The shared x axis: `step` or `wall_time`.
    x: params.get('x') === 'wall_time' ? 'wall_time' : 'step',
    // Per panel: log y (names); a fixed y range (name → [min, max]); its
    // own smoothing (name → weight); a condition whose emergence it marks
    // (name → {op, threshold, hold}); a prediction to a final step (name →
    // {final, lr}: the learning-rate series, '' for a constant rate).
    logY: new Set(commaList(params.get('logy'))),
    yRange: panelSettings(params.get('yrange'), ([lo, hi]) => [optionalNumber(lo), optionalNumber(hi)]),
    smoothing: panelSettings(params.get('psmooth'), ([w]) => Number(w)),
    emerge: panelSettings(params.get('emerge'), ([op, threshold, hold]) => ({ op, threshold: Number(threshold), hold: Number(hold) || 1 })),
    predict: panelSettings(params.get('predict'), ([final, lr]) => ({ final: Number(final), lr: lr || '' })),
    weight: Number(params.get('smoothing') || 0.6),
    // A configuration key: runs with the same value of it form one group
    // (its mean line and min–max band), or share one colour.
    group: params.get('group') || '',
    // Spikes and changepoints on the panels (each asks the server for its
    // series' markers once drawn).
    markers: params.get('markers') === '1',
    color: params.get('color') || '',
    range: params.get('start') && params.get('end') ? [Number(params.get('start')), Number(params.get('end'))] : null,
  };
  const allRuns = await api.runsOrError(view);
  if (!allRuns) return;
  if (!state.runs.length && allRuns.length) state.runs = [allRuns[0].run_id];
  const runLabel = labeller(allRuns);
  // Each run's configuration, flattened (model.width), for grouping and colour.
  const configs = new Map(allRuns.map((r) => [r.run_id, flatten(r.config)]));
  const configKeys = [...new Set([...configs.values()].flatMap(Object.keys))].sort();
  const valueOf = (runId, key) => {
    const value = configs.get(runId)?.[key];
    return `${key}=${value === undefined ? '(none)' : value}`;
  };
  // A run keeps its colour in every panel: its place among the chosen runs,
  // or its value's place among the values of the colour (or group) key;
  // shown beside its name in the picker.
  const keyColor = (label, key) => {
    const values = [...new Set(state.runs.map((r) => valueOf(r, key)))].sort();
    return COLORS[Math.max(0, values.indexOf(label)) % COLORS.length];
  };
  const colorOf = (runId) => {
    const key = state.group || state.color;
    return key ? keyColor(valueOf(runId, key), key) : COLORS[Math.max(0, state.runs.indexOf(runId)) % COLORS.length];
  };
  const hooks = { sections: [], fetched: [], panels: {}, visible: [] };
  testHooks.workspace = hooks;

  const saveRoute = () => {
    const p = { runs: state.runs.join(','), smoothing: state.weight };
    if (state.x !== 'step') p.x = state.x;
    if (state.group) p.group = state.group;
    if (state.markers) p.markers = 1;
    if (state.color) p.color = state.color;
    if (state.filter) p.filter = state.filter;
    if (state.collapsed.size) p.collapsed = [...state.collapsed].join(',');
    if (state.logY.size) p.logy = [...state.logY].join(',');
    if (state.yRange.size) p.yrange = panelSettingsText(state.yRange, ([lo, hi]) => [lo ?? '', hi ?? '']);
    if (state.smoothing.size) p.psmooth = panelSettingsText(state.smoothing, (w) => [w]);
    if (state.emerge.size) p.emerge = panelSettingsText(state.emerge, ({ op, threshold, hold }) => [op, threshold, hold]);
    if (state.predict.size) p.predict = panelSettingsText(state.predict, ({ final, lr }) => [final, lr]);
    if (state.range) Object.assign(p, { start: state.range[0], end: state.range[1] });
    history.replaceState(null, '', `#/workspace?${new URLSearchParams(p)}`);
  };

  const picker = el('div', { class: 'runs-picker' });
  for (const run of allRuns) {
    const box = el('input', { type: 'checkbox', 'data-run': run.run_id });
    box.checked = state.runs.includes(run.run_id);
    box.addEventListener('change', () => {
      state.runs = allRuns.filter((r) => picker.querySelector(`input[data-run="${CSS.escape(r.run_id)}"]`).checked)
        .map((r) => r.run_id);
      build();
    });
    picker.append(el('label', {}, box, el('span', { class: 'swatch', 'data-run': run.run_id }), runLabel(run.run_id)));
  }
  const paintSwatches = () => {
    for (const swatch of picker.querySelectorAll('.swatch')) {
      swatch.style.background = state.runs.includes(swatch.dataset.run) ? colorOf(swatch.dataset.run) : 'transparent';
    }
  };
  const filter = el('input', { type: 'search', id: 'panel-filter', size: 30, placeholder: 'filter metrics (regular expression)' });
  filter.value = state.filter;
  const filterError = el('span', { class: 'error' });
  filter.addEventListener('input', () => { state.filter = filter.value; layout(); });
  const slider = el('input', { type: 'range', min: 0, max: 0.99, step: 0.01 });
  slider.value = state.weight;
  slider.addEventListener('input', () => {
    state.weight = Number(slider.value);
    saveRoute();
    for (const panel of panels.values()) panel.redraw();
  });
  const keyPicker = (id, current, onChange) => {
    const select = el('select', { id }, el('option', { value: '', text: '—' }), ...configKeys.map((k) => el('option', { value: k, text: k })));
    select.value = current;
    select.addEventListener('change', () => { onChange(select.value); saveRoute(); paintSwatches(); for (const panel of panels.values()) panel.redraw(true); });
    return select;
  };
  const groupBy = keyPicker('group-by', state.group, (key) => { state.group = key; });
  const colorBy = keyPicker('color-by', state.color, (key) => { state.color = key; });
  const axis = el('select', { id: 'workspace-x' }, el('option', { value: 'step', text: 'step' }), el('option', { value: 'wall_time', text: 'wall time' }));
  axis.value = state.x;
  axis.addEventListener('change', () => {
    state.x = axis.value;
    state.range = null;
    zoom(null);
  });
  const markerBox = el('input', { type: 'checkbox', id: 'workspace-markers' });
  markerBox.checked = state.markers;
  markerBox.addEventListener('change', () => {
    state.markers = markerBox.checked;
    saveRoute();
    for (const panel of panels.values()) if (panel.response) panel.loadMarks();
  });
  const info = el('span', { class: 'note' });
  const sections = el('div', { id: 'workspace' });
  // The events of the chosen runs, newest first; a click shows the
  // event's panel zoomed to the steps around it.
  const eventList = el('details', { id: 'workspace-events' });
  const errors = el('div');
  view.append(picker,
    el('div', { class: 'controls' }, el('label', {}, 'metrics', filter, filterError), el('label', {}, 'x', axis), el('label', {}, 'smoothing', slider),
      el('label', {}, 'group by', groupBy), el('label', {}, 'colour by', colorBy),
      el('label', {}, markerBox, 'spikes & changepoints'), info),
    errors, eventList, sections,
    el('p', { class: 'note', text: 'Drag on a panel to zoom every panel to those steps; double-click, 0 or Esc zooms out; [ and ] change the smoothing. Each shaded band spans the min and max of a bucket. A panel\'s settings row sets its own smoothing, y range, the condition whose emergence it marks ("> 0.9 for 5"), and the step to predict its course to (dashed, with its interval; against the chosen learning-rate series).' }));

  // Panels by metric name, made once per set of runs; fetched when visible.
  let panels = new Map();
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const panel = entry.target.panel;
      panel.visible = entry.isIntersecting;
      if (panel.visible) panel.ensure();
    }
    hooks.visible = [...panels.values()].filter((p) => p.visible).map((p) => p.name);
    follow();
  }, { rootMargin: '100px' });

  // One stream for the drawn, visible panels (none while zoomed), opened
  // again when they change.
  let source = null;
  let followTimer = null;
  hooks.arrivals = {};
  hooks.received = 0;
  function follow() {
    clearTimeout(followTimer);
    followTimer = setTimeout(() => {
      source?.close();
      source = null;
      const drawn = [...panels.values()].filter((p) => p.visible && p.response);
      if (state.range || !drawn.length || !document.body.contains(sections)) return;
      const lastStep = (run, name) => panels.get(name).response.runs.find((r) => r.run_id === run)?.last_step;
      source = followSeries(state.runs, drawn.map((p) => p.name), lastStep, async ({ series }) => {
        hooks.received += series.reduce((n, s) => n + s.x.length, 0);
        await loadEvents().catch(() => {});
        for (const s of series) panels.get(s.name)?.append(s);
      });
      hooks.following = drawn.map((p) => p.name);
    }, 300);
  }

  function zoom(range) {
    state.range = range;
    saveRoute();
    info.textContent = range ? `steps ${range[0]}…${range[1]}` : '';
    for (const panel of panels.values()) {
      panel.stale = true;
      if (panel.visible) panel.ensure();
    }
    follow();
  }

  // A panel's y scale: logarithmic, and within a fixed range, when set.
  function yScale(name) {
    const scale = state.logY.has(name) ? { distr: 3 } : {};
    const range = state.yRange.get(name);
    if (range) {
      scale.range = (_u, dataMin, dataMax) => [range[0] ?? dataMin, range[1] ?? dataMax];
    }
    if (hooks.panels[name]) hooks.panels[name].yScale = { log: state.logY.has(name), range: range ?? null };
    return scale;
  }

  // A drag over wall time: the steps it covers in `panel`'s data.
  function selectedSteps(panel, from, to) {
    return state.x === 'step' ? [Math.floor(from), Math.ceil(to)] : stepsWithin(panel.response, from, to);
  }

  function makePanel(name, names) {
    const chart = el('div', { class: 'panel-chart' });
    const png = el('button', { class: 'panel-export', 'data-export': 'png', text: 'PNG', title: 'this panel as an image' });
    const csv = el('a', { class: 'panel-export', 'data-export': 'csv', text: 'CSV', title: 'the points of this panel, at full resolution' });
    // The value of each run (or group) at the step under the shared cursor.
    const readout = el('span', { class: 'panel-readout' });
    const log = el('button', { class: 'panel-export', 'data-setting': 'log', text: 'log y', title: 'a logarithmic y axis for this panel' });
    const [yLo, yHi] = ['y min', 'y max'].map((placeholder, i) => {
      const input = el('input', { class: 'panel-range', type: 'number', step: 'any', placeholder, 'data-setting': i ? 'ymax' : 'ymin' });
      const value = state.yRange.get(name)?.[i];
      if (value !== undefined && value !== null) input.value = value;
      return input;
    });
    const smoothing = el('input', { class: 'panel-range', type: 'number', min: 0, max: 0.99, step: 0.05, placeholder: 'smoothing', 'data-setting': 'smoothing', title: 'this panel\'s smoothing (empty: the workspace\'s)' });
    if (state.smoothing.has(name)) smoothing.value = state.smoothing.get(name);
    const emerge = el('input', { class: 'panel-condition', type: 'text', placeholder: 'emerged when: > 0.9 for 5', 'data-setting': 'emerge', title: 'mark the first step from which the value holds this condition for so many points' });
    if (state.emerge.has(name)) emerge.value = emergenceText(state.emerge.get(name));
    const emergeTitle = emerge.title;
    const final = el('input', { class: 'panel-range', type: 'number', min: 1, step: 1, placeholder: 'predict to step', 'data-setting': 'predict', title: 'the course of this series to this step, with its 95 % interval, from the loss-curve fit' });
    const rates = names.filter((n) => n !== name && /(^|[/_.])(lr|learning.?rate)/i.test(n));
    const lr = el('select', { class: 'panel-range', 'data-setting': 'lr', title: 'the learning-rate series the fit follows' },
      el('option', { value: '', text: 'constant lr' }), ...rates.map((n) => el('option', { value: n, text: n })));
    if (state.predict.has(name)) {
      final.value = state.predict.get(name).final;
      lr.value = state.predict.get(name).lr;
    }
    const node = el('div', { class: 'panel', 'data-name': name },
      el('div', { class: 'panel-title' }, el('span', { text: name }), readout,
        el('span', { class: 'panel-tools' }, log, png, csv)),
      el('div', { class: 'panel-settings' }, smoothing, yLo, yHi, emerge, final, lr), chart);
    smoothing.addEventListener('change', () => {
      if (smoothing.value === '') state.smoothing.delete(name);
      else state.smoothing.set(name, Math.min(0.99, Math.max(0, Number(smoothing.value))));
      saveRoute();
      panel.redraw();
    });
    emerge.addEventListener('change', () => {
      const condition = parseEmergence(emerge.value);
      emerge.classList.toggle('invalid', emerge.value !== '' && !condition);
      emerge.title = emerge.value !== '' && !condition ? 'write a comparison and a threshold, then optionally "for" and a number of points: > 0.9 for 5' : emergeTitle;
      if (condition) state.emerge.set(name, condition);
      else state.emerge.delete(name);
      saveRoute();
      panel.loadEmergence();
    });
    for (const input of [final, lr]) {
      input.addEventListener('change', () => {
        if (final.value === '') state.predict.delete(name);
        else state.predict.set(name, { final: Number(final.value), lr: lr.value });
        saveRoute();
        panel.loadPrediction();
      });
    }
    const showLog = () => log.classList.toggle('on', state.logY.has(name));
    showLog();
    log.addEventListener('click', () => {
      if (state.logY.has(name)) state.logY.delete(name); else state.logY.add(name);
      showLog();
      saveRoute();
      panel.redraw(true);
    });
    for (const input of [yLo, yHi]) {
      input.addEventListener('change', () => {
        const bound = (v) => (v.value === '' ? null : Number(v.value));
        if (yLo.value === '' && yHi.value === '') state.yRange.delete(name);
        else state.yRange.set(name, [bound(yLo), bound(yHi)]);
        saveRoute();
        panel.redraw(true);
      });
    }
    png.addEventListener('click', () => {
      if (!panel.plot) return;
      const link = el('a', { download: `${name.replace(/[^\w.-]/g, '_')}.png`, href: panel.plot.ctx.canvas.toDataURL('image/png') });
      link.click();
    });
    const panel = {
      name, node, visible: false, stale: true, response: null, plot: null, ticket: 0, emerged: {}, predictions: {},
      async ensure() {
        if (!panel.stale || !state.runs.length) return;
        panel.stale = false;
        const ticket = ++panel.ticket;
        const width = Math.max(150, Math.floor(chart.clientWidth || 400));
        hooks.fetched.push(name);
        try {
          const response = await api.get('series', {
            runs: state.runs.join(','), name, x: state.x, width,
            start: state.range?.[0], end: state.range?.[1],
          });
          if (ticket !== panel.ticket) return;
          panel.response = response;
          const range = state.range ? { start: state.range[0], end: state.range[1] } : {};
          csv.setAttribute('href', `/api/export.csv?${new URLSearchParams({ runs: state.runs.join(','), name, ...range })}`);
          hooks.panels[name] = {
            points: response.points, downsampled: response.downsampled,
            start: response.start, end: response.end, x: state.x,
            max: Math.max(...response.runs.flatMap((r) => r.hi.filter((v) => v !== null))),
          };
          panel.redraw(true);
          hooks.panels[name].drawnAt = performance.now();
          panel.loadMarks();
          panel.loadEmergence();
          panel.loadPrediction();
          follow();
        } catch (error) {
          panel.stale = true;
          showError(chart, error);
        }
      },
      // `ask(run)` for each of the panel's runs at once: {run: answer}.
      async perRun(ask) {
        const runs = (panel.response?.runs || []).map((r) => r.run_id);
        return Object.fromEntries(await Promise.all(runs.map(async (run) => [run, await ask(run)])));
      },
      // Spikes and changepoints of each run's series, when asked for.
      marks: {},
      async loadMarks() {
        panel.marks = state.markers ? await panel.perRun((run) => api.get('markers', { run, name })) : {};
        panel.plot?.redraw(false, false);
      },
      // The step each run's condition emerged at (null: never), when the
      // panel has a condition.
      async loadEmergence() {
        const condition = state.emerge.get(name);
        if (!condition && !Object.keys(panel.emerged).length) return;
        panel.emerged = condition ? await panel.perRun(async (run) => (await api.get('emergence', { run, name, ...condition })).step) : {};
        if (hooks.panels[name]) hooks.panels[name].emerged = condition ? { ...panel.emerged } : undefined;
        panel.plot?.redraw(false, false);
      },
      // Each run's predicted course to the final step, when the panel asks
      // for one.
      async loadPrediction() {
        const predict = state.predict.get(name);
        // Nothing predicted before or now: nothing to draw again.
        if (!predict && !Object.keys(panel.predictions).length) return;
        panel.predictions = predict ? await panel.perRun((run) => api.get('prediction', { run, name, final: predict.final, lr: predict.lr })
          .catch((error) => ({ fitted: false, error: error.message }))) : {};
        if (hooks.panels[name]) {
          hooks.panels[name].fits = (hooks.panels[name].fits || 0) + (predict ? 1 : 0);
          hooks.panels[name].predicted = predict ? Object.fromEntries(Object.entries(panel.predictions).map(([run, p]) => [run, p.fitted
            ? { final_step: p.step[p.step.length - 1], value: p.value[p.value.length - 1], lo: p.lo[p.lo.length - 1], hi: p.hi[p.hi.length - 1] }
            : { error: p.error ?? 'too few points to fit' }])) : undefined;
        }
        panel.redraw(true);
      },
      // New points of one run from the live stream: those after the run's
      // last drawn step join the data as they are (a bucket of one point
      // each); a panel that has gathered many asks again, downsampled.
      append(series) {
        const response = panel.response;
        if (!response || state.range) return;
        const added = !response.runs.some((r) => r.run_id === series.run_id);
        const steps = appendTail(response, series, state.x === 'wall_time');
        for (const step of steps) hooks.arrivals[`${series.run_id}/${name}/${step}`] = Date.now();
        // The course predicted from the points so far changes with them.
        if (steps.length && state.predict.has(name) && !panel.refit) {
          panel.refit = setTimeout(() => { panel.refit = null; panel.loadPrediction(); }, PREDICTION_REFIT_MS);
        }
        hooks.panels[name] = { ...hooks.panels[name], end: response.end, lastValue: series.y[series.y.length - 1] };
        const width = Math.max(150, Math.floor(chart.clientWidth || 400));
        if (response.runs.some((r) => r.x.length > 4 * width)) { panel.stale = true; panel.ensure(); return; }
        panel.redraw(added);
      },
      // The predicted courses to draw: per run (not per group), over steps,
      // within the zoomed range; each as [steps, value, lo, hi].
      predictedTables() {
        if (state.group || state.x !== 'step') return [];
        return Object.entries(panel.predictions).filter(([, p]) => p.fitted).map(([run, p]) => {
          const keep = p.step.map((step, i) => i).filter((i) => !state.range || (p.step[i] >= state.range[0] && p.step[i] <= state.range[1]));
          return { run, table: [p.step, p.value, p.lo, p.hi].map((column) => keep.map((i) => column[i])) };
        }).filter(({ table }) => table[0].length);
      },
      redraw(fresh = false) {
        const response = state.group && panel.response ? grouped(panel.response, (runId) => valueOf(runId, state.group)) : panel.response;
        if (!response) return;
        const weight = state.smoothing.get(name) ?? state.weight;
        if (hooks.panels[name]) {
          hooks.panels[name].shown = response.runs.map((r) => ({ label: r.run_id, runs: r.runs ?? 1, x: r.x[0], line: r.last[0], lo: r.lo[0], hi: r.hi[0] }));
          hooks.panels[name].weight = weight;
        }
        const predicted = panel.predictedTables();
        const data = seriesData(response, weight, predicted.map((p) => p.table));
        if (hooks.panels[name]) {
          hooks.panels[name].smoothed = response.runs.map((_r, k) => data[4 + 4 * k].filter((v) => v !== null).slice(0, 5));
          hooks.panels[name].shownRaw = response.runs.map((r) => r.last.filter((v) => v !== null).slice(0, 5));
        }
        const shape = `${response.runs.length}/${predicted.length}`;
        if (panel.plot && !fresh && panel.shape === shape) { panel.plot.setData(data); return; }
        panel.shape = shape;
        panel.plot?.destroy();
        const byTime = state.x === 'wall_time';
        const xLabel = byTime ? 'time' : 'step';
        const { series, bands } = state.group
          ? seriesOptions(response, (group) => group, xLabel, (group) => keyColor(group, state.group))
          : seriesOptions(response, runLabel, xLabel, colorOf);
        // A prediction: its course dashed, its interval a faint band.
        for (const { run } of predicted) {
          const color = colorOf(run);
          const base = series.length;
          series.push(
            { label: `${runLabel(run)} predicted`, stroke: color, width: 2, dash: [6, 4], points: { show: false } },
            { label: `${runLabel(run)} predicted lo`, stroke: color + '55', width: 1, dash: [2, 4], points: { show: false } },
            { label: `${runLabel(run)} predicted hi`, stroke: color + '55', width: 1, dash: [2, 4], points: { show: false } });
          bands.push({ series: [base + 2, base + 1], fill: color + '1a' });
        }
        panel.plot = new uPlot({
          width: Math.max(150, chart.clientWidth - 2), height: PANEL_HEIGHT,
          series, bands, legend: { show: false },
          // Wall times come in milliseconds.
          ms: 1,
          scales: { x: { time: byTime }, y: yScale(name) },
          axes: themedAxes(),
          // One cursor for every panel: hovering a step shows it in all.
          cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: 'workspace' } },
          hooks: {
            setCursor: [(u) => {
              const i = u.cursor.idx;
              if (i === null || i === undefined) { readout.textContent = ''; return; }
              const values = response.runs.map((r, k) => [series[4 + 4 * k].label, u.data[1 + 4 * k][i]])
                .filter(([, v]) => v !== null && v !== undefined)
                .map(([label, v]) => `${label} ${Number(v).toPrecision(4)}`);
              readout.textContent = `${byTime ? formatTime(u.data[0][i]) : `step ${u.data[0][i]}`}: ${values.join(', ')}`;
            }],
            draw: [(u) => {
              if (hooks.panels[name]) {
                hooks.panels[name].xMax = u.scales.x.max;
                hooks.panels[name].xTicks = u.axes[0]._values;
              }
              if (byTime) return;
              const shown = events.filter((e) => e.series === name && state.runs.includes(e.run_id)
                && (!state.range || (e.step >= state.range[0] && e.step <= state.range[1])));
              const { left, top, width, height } = u.bbox;
              u.ctx.save();
              u.ctx.beginPath(); u.ctx.rect(left, top, width, height); u.ctx.clip();
              drawEvents(u, shown);
              if (!state.group) {
                const lines = Object.entries(panel.marks).map(([run, marks]) => drawMarks(u, marks, colorOf(run)));
                if (lines.length) hooks.changepointsDrawn[name] = Math.max(...lines);
                for (const [run, step] of Object.entries(panel.emerged)) if (step !== null) drawEmergence(u, step, colorOf(run));
              }
              u.ctx.restore();
              hooks.eventsDrawn[name] = shown.length;
            }],
            setSelect: [(u) => {
              if (u.select.width < 5) return;
              const steps = selectedSteps(panel, u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x'));
              u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
              if (steps) zoom(steps);
            }],
          },
        }, data, chart);
        panel.plot.over.addEventListener('dblclick', () => zoom(null));
      },
    };
    node.panel = panel;
    return panel;
  }

  // Sections and panels for the current filter, from the panels made.
  function layout() {
    saveRoute();
    let pattern = null;
    filterError.textContent = '';
    try {
      pattern = state.filter ? new RegExp(state.filter) : null;
    } catch (error) {
      filterError.textContent = `not a regular expression: ${error.message}`;
    }
    const groups = new Map();
    for (const panel of panels.values()) {
      if (pattern && !pattern.test(panel.name)) continue;
      const slash = panel.name.indexOf('/');
      const section = slash > 0 ? panel.name.slice(0, slash) : OTHER;
      if (!groups.has(section)) groups.set(section, []);
      groups.get(section).push(panel);
    }
    const names = [...groups.keys()].sort((a, b) => (a === OTHER) - (b === OTHER) || a.localeCompare(b));
    for (const panel of panels.values()) observer.unobserve(panel.node);
    sections.replaceChildren();
    hooks.sections = [];
    for (const section of names) {
      const members = groups.get(section);
      const collapsed = state.collapsed.has(section);
      const header = el('button', { class: 'section-toggle', 'data-section': section, text: `${collapsed ? '▸' : '▾'} ${section} (${members.length})` });
      header.addEventListener('click', () => {
        if (state.collapsed.has(section)) state.collapsed.delete(section); else state.collapsed.add(section);
        layout();
      });
      const grid = el('div', { class: 'panel-grid' });
      if (!collapsed) {
        for (const panel of members) {
          grid.append(panel.node);
          observer.observe(panel.node);
        }
      }
      sections.append(el('section', { class: 'workspace-section', 'data-section': section }, header, grid));
      hooks.sections.push({ name: section, panels: members.map((p) => p.name), collapsed });
    }
    const shown = names.reduce((n, s) => n + groups.get(s).length, 0);
    info.textContent = `${shown} of ${panels.size} metrics` + (state.range ? `, steps ${state.range[0]}…${state.range[1]}` : '');
  }

  // The events of the chosen runs (standing conditions), flagged on their
  // series' panels; asked again when live points arrive.
  let events = [];
  hooks.eventsDrawn = {};
  hooks.changepointsDrawn = {};
  async function loadEvents() {
    events = state.runs.length ? (await api.get('events', { runs: state.runs.join(',') })).events : [];
    listEvents();
  }
  const EVENTS_LISTED = 100;
  const AROUND_EVENT = 100;
  function listEvents() {
    const open = eventList.open;
    eventList.replaceChildren(el('summary', { text: `Events (${events.length})` }));
    eventList.open = open;
    eventList.hidden = !events.length;
    const rows = events.slice(-EVENTS_LISTED).reverse().map((e) => {
      const row = el('tr', { class: 'event-row', 'data-event': e.event_id },
        el('td', { text: String(e.step) }), el('td', { text: runLabel(e.run_id) }), el('td', { text: e.series }),
        el('td', { text: e.label }), el('td', { text: String(e.value) }));
      row.addEventListener('click', () => {
        state.filter = `^${e.series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
        filter.value = state.filter;
        layout();
        zoom([Math.max(0, e.step - AROUND_EVENT), e.step + AROUND_EVENT]);
      });
      return row;
    });
    eventList.append(el('table', { class: 'events' },
      el('tr', {}, ...['step', 'run', 'series', 'condition', 'value'].map((h) => el('th', { text: h }))), ...rows));
    hooks.eventsListed = rows.length;
  }

  // Every metric of the selected runs, as fresh panels.
  async function build() {
    saveRoute();
    paintSwatches();
    errors.replaceChildren();
    for (const panel of panels.values()) { observer.unobserve(panel.node); panel.plot?.destroy(); }
    panels = new Map();
    if (state.runs.length) {
      try {
        await loadEvents();
        const { names } = await api.get('names', { runs: state.runs.join(',') });
        for (const name of names) panels.set(name, makePanel(name, names));
      } catch (error) {
        showError(errors, error);
      }
    }
    layout();
  }

  const unbindKeys = bindChartKeys(() => zoom(null), slider);
  // Axes take the theme's colours when drawn: draw again when it changes.
  const theme = matchMedia('(prefers-color-scheme: dark)');
  const onTheme = () => { for (const panel of panels.values()) panel.redraw(true); };
  theme.addEventListener('change', onTheme);

  await build();
  if (!allRuns.length) view.append(el('p', { text: 'No runs yet. Start a trainer that logs to this server.' }));
  return () => { observer.disconnect(); clearTimeout(followTimer); source?.close(); unbindKeys(); theme.removeEventListener('change', onTheme); };
}
