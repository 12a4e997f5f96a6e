// Bundles the dashboard: src/main.js (and uPlot) into dist/app.js, uPlot's
// stylesheet and ours into dist/app.css, and copies index.html. Run by
// crates/steplake-http/build.rs after `npm ci`; `npm run build` does the same.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  outfile: 'dist/app.js',
  logLevel: 'warning',
});
const css = [
  readFileSync('node_modules/uplot/dist/uPlot.min.css', 'utf8'),
  readFileSync('src/style.css', 'utf8'),
].join('\n');
writeFileSync('dist/app.css', css);
copyFileSync('index.html', 'dist/index.html');
