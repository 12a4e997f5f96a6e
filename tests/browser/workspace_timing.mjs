// Timing of the workspace (benches/dashboard.rs runs it against a release
// server holding runs STEPLAKE_RUNS with many metrics each). Prints:
// - the time from navigation to a fully drawn first screen (every panel in
//   view fetched and drawn), five fresh loads, median and each;
// - the bytes that took (transfer sizes of the page and its API calls);
// - the latency from a point's acknowledgement (`steplake write` exits) to
//   its arrival in an open panel, twenty points, median and max.
import { spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const url = process.env.STEPLAKE_URL;
const runs = process.env.STEPLAKE_RUNS;
const browser = await chromium.launch({
  executablePath: process.env.STEPLAKE_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let failed = false;
try {
  const loads = [];
  let bytes = null;
  let panels = null;
  for (let i = 0; i < 5; i++) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(120000);
    await page.goto(`${url}/#/workspace?runs=${runs}`);
    await page.waitForFunction(() => {
      const w = window.steplake?.workspace;
      return w && w.visible.length > 0 && w.visible.every((name) => w.panels[name]?.drawnAt);
    }, null, { polling: 20 });
    const result = await page.evaluate(() => {
      const w = window.steplake.workspace;
      const drawn = Math.max(...w.visible.map((name) => w.panels[name].drawnAt));
      const resources = performance.getEntriesByType('resource');
      const [navigation] = performance.getEntriesByType('navigation');
      const api = resources.filter((r) => r.name.includes('/api/')).reduce((n, r) => n + r.transferSize, 0);
      const all = resources.reduce((n, r) => n + r.transferSize, 0) + (navigation?.transferSize || 0);
      const total = w.sections.reduce((n, s) => n + s.panels.length, 0);
      return { drawn, api, all, visible: w.visible.length, fetched: new Set(w.fetched).size, total };
    });
    loads.push(result.drawn);
    bytes = result;
    panels = result;
    await context.close();
  }
  console.log(`first screen drawn: median ${median(loads).toFixed(0)} ms after navigation (loads: ${loads.map((t) => t.toFixed(0)).join(', ')} ms); `
    + `${panels.visible} panels in view of ${panels.total}, ${panels.fetched} fetched`);
  console.log(`bytes: ${(bytes.all / 1024).toFixed(1)} KiB in all, ${(bytes.api / 1024).toFixed(1)} KiB of API responses`);

  // Live: points written to r0's first metric while its panel is open.
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const first = runs.split(',')[0];
  await page.goto(`${url}/#/workspace?runs=${first}&filter=%5Etrain%2Fm00%24`);
  await page.waitForFunction(() => (window.steplake.workspace?.following || []).includes('train/m00'), null, { timeout: 60000 });
  const last = await page.evaluate(() => window.steplake.workspace.panels['train/m00'].end);
  const latencies = [];
  for (let i = 1; i <= 20; i++) {
    const step = last + i;
    const written = spawnSync(process.env.STEPLAKE_BIN, ['write', '--server', process.env.STEPLAKE_GRPC, '--run', first, '-'],
      { input: `name,step,value\ntrain/m00,${step},0.5\n` });
    const acknowledged = Date.now();
    if (written.status !== 0) throw new Error(`steplake write: ${written.stderr}`);
    await page.waitForFunction((key) => window.steplake.workspace.arrivals[key], `${first}/train/m00/${step}`, { polling: 5, timeout: 30000 });
    const arrived = await page.evaluate((key) => window.steplake.workspace.arrivals[key], `${first}/train/m00/${step}`);
    latencies.push(arrived - acknowledged);
  }
  console.log(`live: acknowledged point → drawn in its panel: median ${median(latencies)} ms, max ${Math.max(...latencies)} ms (20 points)`);
} catch (error) {
  console.log(`FAILED: ${error.stack || error}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
