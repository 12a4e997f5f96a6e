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

export const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4b5563'];

export function formatTime(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '';
}

// Hash routes look like #/view?key=value&...
export function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return { view: path || 'runs', params: new URLSearchParams(query || '') };
}

export function go(view, params = {}) {
  location.hash = `#/${view}?${new URLSearchParams(params)}`;
}
