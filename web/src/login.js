// The login form, shown when the server answers 401 (it requires tokens and
// this browser has none, or a revoked one). POST /api/login checks the
// token and sets an HttpOnly cookie that later requests carry; the token
// itself is never kept where page scripts can read it.
import { el } from './dom.js';

let shown = false;

export function showLogin(reason) {
  if (shown) return;
  shown = true;
  const input = el('input', {
    type: 'password', id: 'login-token', placeholder: 'slk_…', autocomplete: 'current-password',
    size: '50',
  });
  const message = el('p', { class: 'error', id: 'login-error' });
  const form = el('form', {
    id: 'login',
    onsubmit: async (event) => {
      event.preventDefault();
      const response = await fetch('/api/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: input.value.trim() }),
      });
      if (response.ok) {
        location.reload();
        return;
      }
      const body = await response.json().catch(() => ({}));
      message.textContent = body.error || `${response.status} ${response.statusText}`;
    },
  },
  el('h2', { text: 'Sign in' }),
  el('p', { text: reason || 'This server requires a token that may read.' }),
  el('label', { for: 'login-token', text: 'Token ' }), input, ' ',
  el('button', { type: 'submit', text: 'Sign in' }),
  message);
  document.getElementById('view').replaceChildren(form);
  input.focus();
}
