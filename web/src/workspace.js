// The workspace: every metric of the selected runs at once, one panel per
// metric, grouped into sections by name prefix (`train/`, `eval/`, …; names
// without one under "other"). Sections collapse; a regular expression
// narrows the panels. A panel asks the server for its series only once it
// scrolls into view, so hundreds of metrics cost what the visible ones cost.
// Each panel keeps the charts page's min/max/last downsampling; a drag zooms
// every panel to the same step range (fetched again, at full resolution once
// narrow enough), a double click zooms back out. The view (runs, filter,
// collapsed sections, zoom, smoothing) lives in the URL, so a link
// reproduces it. While not zoomed, the drawn panels follow their runs: one
// server-sent event stream (/api/live) brings the points written after those
// drawn, and only those. Events of standing conditions are flagged on their
// series' panels; spikes and changepoints on request.
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, commaList, el, route, showError } from './dom.js';
import { testHooks } from './hooks.js';
import { drawEvents, drawMarks, flatten, grouped, labeller, seriesData, seriesOptions, themedAxes } from './plot.js';

const OTHER = 'other';
const PANEL_HEIGHT = 200;

export async function render(view) {
  const params = route().params;
  const state = {
    runs: commaList(params.get('runs')),
    filter: params.get('filter') || '',
    collapsed: new Set(commaList(params.get('collapsed'))),
    // Per panel: log y (names), and a fixed y range (name → [min, max]).
    logY: new Set(commaList(params.get('logy'))),
    yRange: new Map(commaList(params.get('yrange')).map((entry) => {
      const [name, lo, hi] = entry.split('~');
      return [name, [lo === '' ? null : Number(lo), hi === '' ? null : Number(hi)]];
    })),
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
    if (state.group) p.group = state.group;
    if (state.markers) p.markers = 1;
    if (state.color) p.color = state.color;
    if (state.filter) p.filter = state.filter;
    if (state.collapsed.size) p.collapsed = [...state.collapsed].join(',');
    if (state.logY.size) p.logy = [...state.logY].join(',');
    if (state.yRange.size) p.yrange = [...state.yRange].map(([n, [lo, hi]]) => `${n}~${lo ?? ''}~${hi ?? ''}`).join(',');
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
  const markerBox = el('input', { type: 'checkbox', id: 'workspace-markers' });
  markerBox.checked = state.markers;
  markerBox.addEventListener('change', () => {
    state.markers = markerBox.checked;
    saveRoute();
    for (const panel of panels.values()) if (panel.response) panel.loadMarks();
  });
  const info = el('span', { class: 'note' });
  const sections = el('div', { id: 'workspace' });
  const errors = el('div');
  view.append(picker,
    el('div', { class: 'controls' }, el('label', {}, 'metrics', filter, filterError), el('label', {}, 'smoothing', slider),
      el('label', {}, 'group by', groupBy), el('label', {}, 'colour by', colorBy),
      el('label', {}, markerBox, 'spikes & changepoints'), info),
    errors, sections,
    el('p', { class: 'note', text: 'Drag on a panel to zoom every panel to those steps; double-click, 0 or Esc zooms out; [ and ] change the smoothing. Each shaded band spans the min and max of a bucket.' }));

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
  function follow() {
    clearTimeout(followTimer);
    followTimer = setTimeout(() => {
      source?.close();
      source = null;
      const drawn = [...panels.values()].filter((p) => p.visible && p.response);
      if (state.range || !drawn.length || !document.body.contains(sections)) return;
      const after = Math.min(...drawn.map((p) => p.lastStep()));
      const query = new URLSearchParams({ runs: state.runs.join(','), names: drawn.map((p) => p.name).join(',') });
      if (Number.isFinite(after)) query.set('after', after);
      source = new EventSource(`/api/live?${query}`);
      source.onmessage = async (message) => {
        await loadEvents().catch(() => {});
        for (const series of api.parse(message.data).series) panels.get(series.name)?.append(series);
      };
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

  function makePanel(name) {
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
    const node = el('div', { class: 'panel', 'data-name': name },
      el('div', { class: 'panel-title' }, el('span', { text: name }), readout,
        el('span', { class: 'panel-tools' }, yLo, yHi, log, png, csv)), chart);
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
      name, node, visible: false, stale: true, response: null, plot: null, ticket: 0,
      async ensure() {
        if (!panel.stale || !state.runs.length) return;
        panel.stale = false;
        const ticket = ++panel.ticket;
        const width = Math.max(150, Math.floor(chart.clientWidth || 400));
        hooks.fetched.push(name);
        try {
          const response = await api.get('series', {
            runs: state.runs.join(','), name, x: 'step', width,
            start: state.range?.[0], end: state.range?.[1],
          });
          if (ticket !== panel.ticket) return;
          panel.response = response;
          const range = state.range ? { start: state.range[0], end: state.range[1] } : {};
          csv.setAttribute('href', `/api/export.csv?${new URLSearchParams({ runs: state.runs.join(','), name, ...range })}`);
          hooks.panels[name] = {
            points: response.points, downsampled: response.downsampled,
            start: response.start, end: response.end,
            max: Math.max(...response.runs.flatMap((r) => r.hi.filter((v) => v !== null))),
          };
          panel.redraw(true);
          hooks.panels[name].drawnAt = performance.now();
          panel.loadMarks();
          follow();
        } catch (error) {
          panel.stale = true;
          showError(chart, error);
        }
      },
      // Spikes and changepoints of each run's series, when asked for.
      marks: {},
      async loadMarks() {
        panel.marks = {};
        if (state.markers) {
          for (const run of panel.response.runs.map((r) => r.run_id)) {
            panel.marks[run] = await api.get('markers', { run, name });
          }
        }
        panel.plot?.redraw(false, false);
      },
      // The last step drawn of any run (-1 when none).
      lastStep() {
        return Math.max(-1, ...(panel.response?.runs || []).map((r) => r.last_step ?? -1));
      },
      // New points of one run from the live stream: those after the run's
      // last drawn step join the data as they are (a bucket of one point
      // each); a panel that has gathered many asks again, downsampled.
      append({ run_id: runId, x, y }) {
        const response = panel.response;
        if (!response || state.range) return;
        let run = response.runs.find((r) => r.run_id === runId);
        const added = !run;
        if (!run) {
          run = { run_id: runId, x: [], last: [], lo: [], hi: [], last_step: null };
          response.runs.push(run);
        }
        x.forEach((step, i) => {
          if (run.last_step !== null && step <= run.last_step) return;
          run.x.push(step); run.last.push(y[i]); run.lo.push(y[i]); run.hi.push(y[i]);
          run.last_step = step;
          hooks.arrivals[`${runId}/${name}/${step}`] = Date.now();
        });
        response.points += x.length;
        response.end = Math.max(response.end ?? -Infinity, ...x);
        hooks.panels[name] = { ...hooks.panels[name], end: response.end, lastValue: y[y.length - 1] };
        const width = Math.max(150, Math.floor(chart.clientWidth || 400));
        if (run.x.length > 4 * width) { panel.stale = true; panel.ensure(); return; }
        panel.redraw(added);
      },
      redraw(fresh = false) {
        const response = state.group && panel.response ? grouped(panel.response, (runId) => valueOf(runId, state.group)) : panel.response;
        if (!response) return;
        if (hooks.panels[name]) {
          hooks.panels[name].shown = response.runs.map((r) => ({ label: r.run_id, runs: r.runs ?? 1, x: r.x[0], line: r.last[0], lo: r.lo[0], hi: r.hi[0] }));
        }
        const data = seriesData(response, state.weight);
        if (panel.plot && !fresh) { panel.plot.setData(data); return; }
        panel.plot?.destroy();
        const { series, bands } = state.group
          ? seriesOptions(response, (group) => group, 'step', (group) => keyColor(group, state.group))
          : seriesOptions(response, runLabel, 'step', colorOf);
        panel.plot = new uPlot({
          width: Math.max(150, chart.clientWidth - 2), height: PANEL_HEIGHT,
          series, bands, legend: { show: false },
          scales: { x: { time: false }, y: yScale(name) },
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
              readout.textContent = `step ${u.data[0][i]}: ${values.join(', ')}`;
            }],
            draw: [(u) => {
              const shown = events.filter((e) => e.series === name && state.runs.includes(e.run_id)
                && (!state.range || (e.step >= state.range[0] && e.step <= state.range[1])));
              const { left, top, width, height } = u.bbox;
              u.ctx.save();
              u.ctx.beginPath(); u.ctx.rect(left, top, width, height); u.ctx.clip();
              drawEvents(u, shown);
              if (!state.group) {
                const lines = Object.entries(panel.marks).map(([run, marks]) => drawMarks(u, marks, colorOf(run)));
                if (lines.length) hooks.changepointsDrawn[name] = Math.max(...lines);
              }
              u.ctx.restore();
              hooks.eventsDrawn[name] = shown.length;
            }],
            setSelect: [(u) => {
              if (u.select.width < 5) return;
              const lo = Math.floor(u.posToVal(u.select.left, 'x'));
              const hi = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x'));
              u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
              zoom([lo, hi]);
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
    if (!state.runs.length) { events = []; return; }
    events = (await api.get('events', { runs: state.runs.join(',') })).events;
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
        for (const name of names) panels.set(name, makePanel(name));
      } catch (error) {
        showError(errors, error);
      }
    }
    layout();
  }

  // Keys: 0 or Escape zooms out; [ and ] smooth less and more.
  const onKey = (event) => {
    if (event.target.matches?.('input, textarea, select')) return;
    if (event.key === '0' || event.key === 'Escape') zoom(null);
    else if (event.key === '[' || event.key === ']') {
      const weight = Math.min(0.99, Math.max(0, state.weight + (event.key === ']' ? 0.05 : -0.05)));
      slider.value = weight;
      slider.dispatchEvent(new Event('input'));
    }
  };
  document.addEventListener('keydown', onKey);
  // Axes take the theme's colours when drawn: draw again when it changes.
  const theme = matchMedia('(prefers-color-scheme: dark)');
  const onTheme = () => { for (const panel of panels.values()) panel.redraw(true); };
  theme.addEventListener('change', onTheme);

  await build();
  if (!allRuns.length) view.append(el('p', { text: 'No runs yet. Start a trainer that logs to this server.' }));
  return () => { observer.disconnect(); clearTimeout(followTimer); source?.close(); document.removeEventListener('keydown', onKey); theme.removeEventListener('change', onTheme); };
}
