// Small DOM helpers.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function showError(container, error) {
  container.append(el('p', { class: 'error', text: String(error.message || error) }));
}

// Okabe and Ito's palette: told apart with every common colour-vision
// deficiency (and readable on the dark theme).
export const COLORS = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#56B4E9', '#CC79A7', '#F0E442', '#999999'];

export function formatTime(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '';
}

// Hash routes look like #/view?key=value&...
export function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return { view: path || 'runs', params: new URLSearchParams(query || '') };
}

// A comma-separated list (from a URL parameter or an input), trimmed, without
// empty items.
export function commaList(text) {
  return (text || '').split(',').map((item) => item.trim()).filter(Boolean);
}

export function go(view, params = {}) {
  location.hash = `#/${view}?${new URLSearchParams(params)}`;
}
