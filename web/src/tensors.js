// The tensors page: one tensor's statistics over steps (L2 norm, mean, std)
// and its histogram over time as a heatmap (a column per step, 64 bins from
// that step's min at the bottom to its max at the top; darker = more).
import uPlot from 'uplot';
import * as api from './api.js';
import { COLORS, el, route, showError } from './dom.js';

export async function render(view) {
  const params = route().params;
  let runs;
  try {
    runs = (await api.get('runs')).runs;
  } catch (error) {
    showError(view, error);
    return;
  }
  const runSelect = el('select', {}, ...runs.map((r) => el('option', { value: r.run_id, text: r.name || r.run_id })));
  runSelect.value = params.get('run') || runs[0]?.run_id || '';
  const nameSelect = el('select');
  const lines = el('div', { class: 'chart' });
  const heatmap = el('canvas', { class: 'heatmap', width: 800, height: 256 });
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
        series: [{ label: 'step' },
          { label: 'l2', stroke: COLORS[0], width: 2 },
          { label: 'mean', stroke: COLORS[1], width: 2, scale: 'm' },
          { label: 'std', stroke: COLORS[2], width: 2, scale: 'm' }],
        axes: [{}, { label: 'l2' }, { side: 1, scale: 'm', label: 'mean, std' }],
      }, [stats.step, stats.l2, stats.mean, stats.std], lines);
      drawHeatmap(heatmap, stats.hist);
      note.textContent = `${stats.step.length} steps. Heatmap bins span each step's own [min, max].`;
    } catch (error) {
      showError(errors, error);
    }
  }
  runSelect.addEventListener('change', async () => { await loadNames(); await load(); });
  nameSelect.addEventListener('change', load);
  await loadNames();
  await load();
}

function drawHeatmap(canvas, histograms) {
  const ctx = canvas.getContext('2d');
  const steps = histograms.length;
  const bins = histograms[0]?.length || 64;
  canvas.width = Math.max(1, steps);
  canvas.height = bins;
  canvas.style.width = '800px';
  canvas.style.height = '256px';
  const image = ctx.createImageData(canvas.width, canvas.height);
  let top = 1;
  for (const h of histograms) for (const c of h) top = Math.max(top, c);
  const scale = Math.log1p(top);
  histograms.forEach((h, x) => {
    h.forEach((count, bin) => {
      const shade = 255 - Math.round(230 * Math.log1p(count) / scale);
      const i = 4 * ((bins - 1 - bin) * canvas.width + x);
      image.data[i] = shade; image.data[i + 1] = shade; image.data[i + 2] = 255; image.data[i + 3] = 255;
    });
  });
  ctx.putImageData(image, 0, 0);
}
