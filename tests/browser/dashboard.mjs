// The dashboard in headless Chromium, against a server that holds run "big"
// (1M points of `loss` with a spike of 1000 at step 31,337), run "small" and
// run "wide" (31 metrics). Checks:
// - with STEPLAKE_TOKEN, the page asks for a token; a wrong one is refused,
//   the right one admits;
// - the runs table lists the runs, with configuration keys, lineage and
//   chosen metrics' last values as columns; a header sorts; ticked runs open
//   in the workspace;
// - the chart of 1M points draws, and the downsampled data it drew contains
//   the spike; a drag zooms in and the server answers at full resolution;
// - the legend and the event list name runs by name; at most a few
//   changepoint lines;
// - the workspace lists its runs' events, a click zooming to one;
// - the workspace shows a panel per metric in sections by prefix, fetches
//   only visible panels, filters, collapses and keeps its view in the URL;
//   a point written while a panel is open reaches it (only that point,
//   though another run of the panel is far ahead); per-panel log y, y
//   range, smoothing, an emergence condition and a prediction to a final
//   step (drawn as the SQL functions answer), kept in the URL; wall time as
//   the shared x axis, a drag over it zooming to the steps it covers; a
//   panel exports its points as CSV and itself as PNG; keys zoom out and
//   smooth; grouping by a configuration key draws each group's mean and
//   min–max band; the theme follows the system's dark mode;
// - the charts page follows its run through the live stream (no polling),
//   its keys zoom out and smooth, and its wall-time axis shows times;
// - the SQL box runs a linked statement, charts a result with steps over
//   steps (not dates), keeps the statement in the URL and shows refusals;
// - the tensors page has step axes (not dates) and a heatmap with a step
//   axis and a value axis;
// - no console errors.
// Prints the load time of the 1M-point chart and the latency from a point's
// acknowledgement to its arrival in an open panel, and saves screenshots to
// $STEPLAKE_ARTIFACTS.
import { spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const url = process.env.STEPLAKE_URL;
const artifacts = process.env.STEPLAKE_ARTIFACTS || '.';
const browser = await chromium.launch({
  executablePath: process.env.STEPLAKE_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const errors = [];
let failed = false;
function check(condition, message) {
  if (!condition) {
    console.log(`FAILED: ${message}`);
    failed = true;
  }
}

// Writes `row` (name,step,value) to `run` over gRPC, as a trainer would.
function writePoint(run, row) {
  return spawnSync(process.env.STEPLAKE_BIN, ['write', '--server', process.env.STEPLAKE_GRPC, '--run', run, '-'],
    { input: `name,step,value\n${row}\n`, env: { ...process.env, STEPLAKE_TOKEN: process.env.STEPLAKE_WRITE_TOKEN } });
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  // Generous: the test suite runs beside this on two shared cores.
  page.setDefaultTimeout(240000);
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));

  // The server requires tokens: the page asks for one, and the cookie the
  // login sets admits every later request (reloads included).
  await page.goto(`${url}/#/runs`);
  if (process.env.STEPLAKE_TOKEN) {
    await page.waitForSelector('#login');
    await page.fill('#login-token', 'slk_wrong');
    await page.click('#login button');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent.includes('not valid'));
    await page.fill('#login-token', process.env.STEPLAKE_TOKEN);
    await page.click('#login button');
    await page.waitForSelector('#runs-table');
    // The 401s before the login are expected console errors.
    errors.length = 0;
    console.log('signed in with a read token');
  }
  await page.waitForSelector('#runs-table tr[data-run="big"]', { timeout: 240000 });
  await page.waitForSelector('#runs-table tr[data-run="small"]', { timeout: 240000 });
  await page.screenshot({ path: `${artifacts}/runs.png` });
  console.log('runs table lists big and small');
  // Configuration keys, lineage and chosen metrics' last values as columns;
  // a header sorts; ticked runs open in the workspace.
  await page.goto(`${url}/#/runs?metrics=loss`);
  await page.waitForFunction(() => window.steplake.runsTable?.columns.includes('last loss'), null, { timeout: 60000 });
  const table = await page.evaluate(() => window.steplake.runsTable);
  for (const column of ['lr', 'model.width', 'forked from', 'last loss']) {
    check(table.columns.includes(column), `runs table column ${column}: ${table.columns}`);
  }
  const cell = (row, column) => row[table.columns.indexOf(column)];
  const bigRow = table.rows.find((r) => cell(r, 'run') === 'big');
  const smallRow = table.rows.find((r) => cell(r, 'run') === 'small');
  check(cell(bigRow, 'model.width') === '256' && cell(bigRow, 'lr') === '0.001', `big's config: ${bigRow}`);
  check(Math.abs(Number(cell(bigRow, 'last loss')) - 1 / (1 + 999999 / 1000)) < 1e-12, `big's last loss: ${cell(bigRow, 'last loss')}`);
  check(cell(smallRow, 'forked from') === 'baseline run @ 500', `small's lineage: ${cell(smallRow, 'forked from')}`);
  await page.click('th[data-key="config.lr"]');
  const byLr = await page.evaluate(() => window.steplake.runsTable.rows.map((r) => r[0]));
  check(byLr[0] === 'big' && byLr.slice(1, 3).sort().join() === 'small,wide', `sorted by lr (runs without lr last): ${byLr}`);
  check(page.url().includes('sort=config.lr'), `the sort is in the URL: ${page.url()}`);
  await page.check('#runs-table input[data-run="big"]');
  await page.check('#runs-table input[data-run="small"]');
  await page.click('#open-workspace');
  await page.waitForFunction(() => location.hash.startsWith('#/workspace'), null, { timeout: 60000 });
  const opened = new URL(page.url().replace('#/workspace', '')).searchParams.get('runs')?.split(',').sort().join();
  check(opened === 'big,small', `the ticked runs open in the workspace: ${page.url()}`);
  console.log('runs table: config, lineage and last-value columns, sort, open in workspace');

  // A fresh page load straight onto the chart of 1M points.
  await page.goto('about:blank');
  const wallStart = Date.now();
  await page.goto(`${url}/#/charts?runs=big&name=loss&smoothing=0.6`);
  await page.waitForFunction(() => window.steplake?.lastSeries && window.steplake.drawnAt !== null, null, { timeout: 240000 });
  const drawn = await page.evaluate(() => ({
    drawnAt: window.steplake.drawnAt,
    fetchMs: window.steplake.fetchMs,
    points: window.steplake.lastSeries.points,
    downsampled: window.steplake.lastSeries.downsampled,
    buckets: window.steplake.lastSeries.runs[0].x.length,
    max: Math.max(...window.steplake.lastSeries.runs[0].hi),
  }));
  const wall = Date.now() - wallStart;
  console.log(`chart of ${drawn.points} points drawn in ${Math.round(drawn.drawnAt)} ms after navigation start `
    + `(series API ${Math.round(drawn.fetchMs)} ms, ${drawn.buckets} buckets; ${wall} ms wall clock from goto)`);
  check(drawn.points === 1000000, `expected 1000000 points, got ${drawn.points}`);
  check(drawn.downsampled, 'a 1M-point series is downsampled');
  check(drawn.max === 1000, `the spike (1000) must be in the downsampled data, max was ${drawn.max}`);
  // The standing condition's event: marked on the chart and listed below it.
  await page.waitForFunction(() => (window.steplake.events || []).length > 0, null, { timeout: 60000 });
  const events = await page.evaluate(() => window.steplake.events);
  check(events.length === 1 && events[0].step === 31337 && events[0].label === 'loss at 1000',
    `one event at the spike, got ${JSON.stringify(events)}`);
  const listed = await page.locator('#events table.events tr').count();
  check(listed === 2, `the event list has a header and one event, got ${listed} rows`);
  const listedRun = await page.locator('#events table.events tr:nth-child(2) td:nth-child(2)').textContent();
  check(listedRun === 'baseline run', `the event list names the run, got ${listedRun}`);
  console.log('the spike event is on the chart and in the list');
  // The legend names the run by its name, not its id.
  const legend = await page.evaluate(() => window.steplake.legend);
  check(legend.includes('baseline run') && !legend.includes('big'), `legend labels: ${JSON.stringify(legend)}`);
  // Changepoint lines: a few at most, never a pile.
  await page.waitForFunction(() => window.steplake.changepointsDrawn?.big !== undefined, null, { timeout: 60000 });
  const changepoints = await page.evaluate(() => window.steplake.changepointsDrawn.big);
  check(changepoints <= 5, `at most 5 changepoint lines, drew ${changepoints}`);
  const painted = await page.evaluate(() => {
    const canvas = document.querySelector('#chart canvas');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0) inked++;
    return inked;
  });
  check(painted > 1000, `the chart canvas has ${painted} painted pixels`);
  // Let the marker requests finish, then keep a picture.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${artifacts}/dashboard.png` });

  // Drag across the spike twice (a band a few pixels wide is too narrow to
  // select at 1M steps): the server is asked again each time, at full
  // resolution the second time.
  const over = await page.locator('#chart .u-over').boundingBox();
  async function drag(from, to) {
    const { start, end } = await page.evaluate(() => ({ start: window.steplake.lastSeries.start, end: window.steplake.lastSeries.end }));
    const xAt = (step) => over.x + (over.width * (step - start)) / (end - start);
    await page.mouse.move(xAt(from), over.y + over.height / 2);
    await page.mouse.down();
    await page.mouse.move(xAt(to), over.y + over.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction((before) => window.steplake.lastSeries.start !== before, start, { timeout: 240000 });
  }
  await drag(25000, 40000);
  await drag(31250, 31420);
  const zoomed = await page.evaluate(() => ({
    start: window.steplake.lastSeries.start,
    end: window.steplake.lastSeries.end,
    downsampled: window.steplake.lastSeries.downsampled,
    values: window.steplake.lastSeries.runs[0].last,
    x: window.steplake.lastSeries.runs[0].x,
  }));
  console.log(`zoomed to steps ${zoomed.start}..${zoomed.end}, downsampled: ${zoomed.downsampled}`);
  check(!zoomed.downsampled, 'a zoomed range of a few hundred steps comes at full resolution');
  check(zoomed.x.includes(31337) && zoomed.values[zoomed.x.indexOf(31337)] === 1000, 'the spike is in the zoomed data');
  await page.screenshot({ path: `${artifacts}/zoomed.png` });
  // Keys on the charts page: 0 zooms out, ] smooths more (kept in the URL).
  await page.keyboard.press('0');
  await page.waitForFunction(() => window.steplake.lastSeries.start === 0, null, { timeout: 60000 });
  await page.keyboard.press(']');
  const chartSmoothing = await page.evaluate(() => new URL(location.href.replace('#/charts', '')).searchParams.get('smoothing'));
  check(Math.abs(Number(chartSmoothing) - 0.65) < 1e-9, `] on the charts page: smoothing ${chartSmoothing}`);
  // Over wall time the axis shows times of day (milliseconds read as such,
  // not as seconds, which put run "wide"'s half hour over weeks).
  await page.goto(`${url}/#/charts?runs=wide&name=train%2Fm00&x=wall_time`);
  await page.waitForFunction(() => window.steplake.lastSeries?.runs?.[0]?.step && window.steplake.xTicks?.length, null, { timeout: 60000 });
  const timeTicks = await page.evaluate(() => window.steplake.xTicks);
  check(timeTicks.every((t) => /\d:\d\d/.test(t)), `wall-time ticks are times of day: ${timeTicks}`);
  // Live, without polling: a point written while the chart is open arrives
  // through the stream, and only that point.
  await page.goto(`${url}/#/charts?runs=small&name=loss`);
  await page.waitForFunction(() => window.steplake.live?.following === 'loss', null, { timeout: 60000 });
  await page.waitForTimeout(300);
  const chartWrite = writePoint('small', 'loss,5000,42');
  check(chartWrite.status === 0, `steplake write: ${chartWrite.stderr}`);
  await page.waitForFunction(() => window.steplake.lastSeries.end === 5000, null, { timeout: 30000 });
  const chartLive = await page.evaluate(() => ({ received: window.steplake.live.received, last: window.steplake.lastSeries.runs[0].last.at(-1) }));
  check(chartLive.received === 1 && chartLive.last === 42, `the charts page got the new point alone: ${JSON.stringify(chartLive)}`);
  console.log('charts page: keys, wall-time axis, live point through the stream');

  // The workspace: a panel per metric of runs "small" and "wide", in
  // sections by prefix, fetched only once visible.
  await page.goto(`${url}/#/workspace?runs=small,wide`);
  await page.waitForFunction(() => window.steplake.workspace?.sections.length > 0 && window.steplake.workspace.fetched.length > 0,
    null, { timeout: 60000 });
  await page.waitForTimeout(500);
  const workspace = await page.evaluate(() => window.steplake.workspace);
  const sectionNames = workspace.sections.map((s) => s.name).join();
  check(sectionNames === 'eval,train,other', `sections: ${sectionNames}`);
  const total = workspace.sections.reduce((n, s) => n + s.panels.length, 0);
  check(total === 33, `33 metrics (30 of wide, lr, and small's loss and acc), got ${total}`);
  const fetchedAtFirst = new Set(workspace.fetched).size;
  check(fetchedAtFirst > 0 && fetchedAtFirst < total, `only visible panels fetched: ${fetchedAtFirst} of ${total}`);
  console.log(`workspace: ${total} panels in ${sectionNames}, ${fetchedAtFirst} fetched before scrolling`);
  // Scrolling a panel into view fetches it; the planted spike is in its
  // downsampled data.
  await page.locator('.panel[data-name="train/m07"]').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => window.steplake.workspace.panels['train/m07'], null, { timeout: 60000 });
  const m07 = await page.evaluate(() => window.steplake.workspace.panels['train/m07']);
  check(m07.max === 500, `the spike is in train/m07's panel data, max ${m07.max}`);
  // A filter narrows the panels; a collapsed section hides its panels; both
  // are in the URL, and the URL brings them back.
  await page.fill('#panel-filter', '^eval/');
  await page.click('button[data-section="eval"]');
  const narrowed = await page.evaluate(() => window.steplake.workspace.sections);
  check(narrowed.length === 1 && narrowed[0].name === 'eval' && narrowed[0].panels.length === 10 && narrowed[0].collapsed,
    `filtered and collapsed: ${JSON.stringify(narrowed)}`);
  check(await page.locator('.panel').count() === 0, 'a collapsed section shows no panels');
  const link = page.url();
  check(link.includes('filter=%5Eeval%2F') && link.includes('collapsed=eval'), `the URL keeps the view: ${link}`);
  await page.goto('about:blank');
  await page.goto(link);
  await page.waitForFunction(() => window.steplake.workspace?.sections.length > 0, null, { timeout: 60000 });
  const restored = await page.evaluate(() => ({ sections: window.steplake.workspace.sections, filter: document.getElementById('panel-filter').value }));
  check(restored.filter === '^eval/' && restored.sections.length === 1 && restored.sections[0].collapsed,
    `the link restores the view: ${JSON.stringify(restored)}`);
  // A zoomed link: the panels come at full resolution for that step range.
  await page.goto(`${url}/#/workspace?runs=wide&filter=train%2Fm07&start=1200&end=1300`);
  await page.waitForFunction(() => window.steplake.workspace?.panels?.['train/m07'], null, { timeout: 60000 });
  const zoomedPanel = await page.evaluate(() => window.steplake.workspace.panels['train/m07']);
  check(!zoomedPanel.downsampled && zoomedPanel.start === 1200 && zoomedPanel.end === 1300 && zoomedPanel.max === 500,
    `zoomed panel: ${JSON.stringify(zoomedPanel)}`);
  // The zoomed panel's CSV: every point of the range, at full resolution.
  const exported = await page.evaluate(async () => {
    const href = document.querySelector('.panel[data-name="train/m07"] a[data-export="csv"]').getAttribute('href');
    return (await fetch(href)).text();
  });
  const lines = exported.trim().split('\n');
  check(lines[0] === 'run_id,step,wall_time,value' && lines.length === 102, `CSV of steps 1200..1300: ${lines.length} lines, ${lines[0]}`);
  check(lines.some((l) => l.startsWith('wide,1234,') && l.endsWith(',500')), 'the CSV has the spike');
  const download = page.waitForEvent('download');
  await page.click('.panel[data-name="train/m07"] button[data-export="png"]');
  check((await download).suggestedFilename() === 'train_m07.png', 'the PNG downloads');
  // Keys: ] smooths more, 0 zooms out.
  const before = await page.evaluate(() => new URL(location.href.replace('#/workspace', '')).searchParams.get('smoothing'));
  await page.keyboard.press(']');
  await page.keyboard.press('0');
  const after = await page.evaluate(() => Object.fromEntries(new URL(location.href.replace('#/workspace', '')).searchParams));
  check(Number(after.smoothing) > Number(before) && after.start === undefined, `keys: smoothing ${before} → ${after.smoothing}, zoom from ${after.start}`);
  await page.goto(`${url}/#/workspace?runs=small,wide`);
  await page.waitForFunction(() => window.steplake.workspace?.fetched.length > 3, null, { timeout: 60000 });
  await page.waitForTimeout(1000);
  await page.screenshot({ path: `${artifacts}/workspace.png` });
  // The dark theme follows the system.
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(dark === 'rgb(18, 21, 27)', `dark background: ${dark}`);
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${artifacts}/workspace-dark.png` });
  await page.emulateMedia({ colorScheme: 'light' });

  // Per-panel settings (log y and a y range, kept in the URL), and the
  // shared cursor.
  await page.goto(`${url}/#/workspace?runs=wide&filter=%5Etrain%2Fm0%5B01%5D%24`);
  await page.waitForFunction(() => ['train/m00', 'train/m01'].every((n) => window.steplake.workspace?.panels?.[n]?.drawnAt), null, { timeout: 60000 });
  // One cursor: hovering train/m00 shows the value at that step in
  // train/m01's panel too.
  const m00 = await page.locator('.panel[data-name="train/m00"] .u-over').boundingBox();
  await page.mouse.move(m00.x + m00.width / 2, m00.y + m00.height / 2);
  await page.waitForFunction(() => document.querySelector('.panel[data-name="train/m01"] .panel-readout')?.textContent.startsWith('step '),
    null, { timeout: 10000 });
  const readout = await page.locator('.panel[data-name="train/m01"] .panel-readout').textContent();
  check(/^step \d+: wide [\d.e+-]+$/.test(readout), `the other panel reads out the hovered step: ${readout}`);
  await page.click('.panel[data-name="train/m00"] button[data-setting="log"]');
  await page.fill('.panel[data-name="train/m01"] input[data-setting="ymax"]', '5');
  await page.press('.panel[data-name="train/m01"] input[data-setting="ymax"]', 'Enter');
  const settings = await page.evaluate(() => ({
    m00: window.steplake.workspace.panels['train/m00'].yScale,
    m01: window.steplake.workspace.panels['train/m01'].yScale,
    link: location.href,
  }));
  check(settings.m00.log && !settings.m01.log && settings.m01.range?.[1] === 5 && settings.m01.range?.[0] === null,
    `per-panel settings: ${JSON.stringify(settings)}`);
  await page.goto('about:blank');
  await page.goto(settings.link);
  await page.waitForFunction(() => ['train/m00', 'train/m01'].every((n) => window.steplake.workspace?.panels?.[n]?.yScale), null, { timeout: 60000 });
  const kept = await page.evaluate(() => [window.steplake.workspace.panels['train/m00']?.yScale, window.steplake.workspace.panels['train/m01'].yScale]);
  check(kept[0]?.log && kept[1].range?.[1] === 5, `the link keeps per-panel settings: ${JSON.stringify(kept)}`);

  // Per-panel smoothing, emergence and prediction, kept in the URL.
  await page.goto('about:blank');
  await page.goto(`${url}/#/workspace?runs=wide&filter=%5Etrain%2Fm0%5B01%5D%24`);
  await page.waitForFunction(() => ['train/m00', 'train/m01'].every((n) => window.steplake.workspace?.panels?.[n]?.drawnAt), null, { timeout: 60000 });
  const m00Panel = '.panel[data-name="train/m00"]';
  await page.fill(`${m00Panel} input[data-setting="smoothing"]`, '0');
  await page.press(`${m00Panel} input[data-setting="smoothing"]`, 'Enter');
  const smoothed = await page.evaluate(() => ['train/m00', 'train/m01'].map((n) => window.steplake.workspace.panels[n]));
  check(smoothed[0].weight === 0 && smoothed[1].weight === 0.6, `per-panel smoothing: ${smoothed.map((p) => p.weight)}`);
  check(smoothed[0].smoothed[0].join() === smoothed[0].shownRaw[0].join() && smoothed[1].smoothed[0][1] !== smoothed[1].shownRaw[0][1],
    `unsmoothed m00 draws its raw values, m01 smooths: ${JSON.stringify(smoothed.map((p) => [p.smoothed[0], p.shownRaw[0]]))}`);
  // m00 = 1 / (1 + step / 100) falls below 0.05 after step 1,900.
  await page.fill(`${m00Panel} input[data-setting="emerge"]`, '< 0.05 for 10');
  await page.press(`${m00Panel} input[data-setting="emerge"]`, 'Enter');
  await page.waitForFunction(() => window.steplake.workspace.panels['train/m00'].emerged?.wide !== undefined, null, { timeout: 60000 });
  const emerged = await page.evaluate(() => window.steplake.workspace.panels['train/m00'].emerged);
  check(emerged.wide === 1901, `m00 emerged at ${JSON.stringify(emerged)}`);
  await page.fill('.panel[data-name="train/m01"] input[data-setting="emerge"]', 'about 3');
  await page.press('.panel[data-name="train/m01"] input[data-setting="emerge"]', 'Enter');
  check(await page.locator('.panel[data-name="train/m01"] input[data-setting="emerge"].invalid').count() === 1, 'a condition that is not one is marked');
  // The course of m00 to step 10,000 against the lr series: what the SQL
  // functions predict, drawn to that step.
  await page.selectOption(`${m00Panel} select[data-setting="lr"]`, 'lr');
  await page.fill(`${m00Panel} input[data-setting="predict"]`, '10000');
  await page.press(`${m00Panel} input[data-setting="predict"]`, 'Enter');
  await page.waitForFunction(() => window.steplake.workspace.panels['train/m00'].predicted?.wide, null, { timeout: 60000 });
  await page.waitForTimeout(300);
  const predicted = await page.evaluate(async () => {
    const sql = "SELECT predict_loss_curve(fit_loss_curve(r.step, s.value, r.value), 10000) AS p FROM scalars r "
      + "LEFT JOIN scalars s ON s.run_id = r.run_id AND s.step = r.step AND s.name = 'train/m00' WHERE r.run_id = 'wide' AND r.name = 'lr'";
    const answer = await (await fetch('/api/sql', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sql }) })).json();
    return { panel: window.steplake.workspace.panels['train/m00'], sql: answer.rows[0].p };
  });
  const wide = predicted.panel.predicted.wide;
  check(wide.final_step === 10000 && Math.abs(wide.value - predicted.sql.value) < 1e-9 && Math.abs(wide.lo - predicted.sql.lo) < 1e-9
    && Math.abs(wide.hi - predicted.sql.hi) < 1e-9, `the prediction drawn is SQL's: ${JSON.stringify(wide)} vs ${JSON.stringify(predicted.sql)}`);
  check(predicted.panel.xMax >= 10000, `the panel's x axis reaches the final step: ${predicted.panel.xMax}`);
  await page.screenshot({ path: `${artifacts}/workspace-settings.png` });
  const settingsLink = page.url();
  check(settingsLink.includes('psmooth=') && settingsLink.includes('emerge=') && settingsLink.includes('predict='), `the URL keeps them: ${settingsLink}`);
  await page.goto('about:blank');
  await page.goto(settingsLink);
  await page.waitForFunction(() => window.steplake.workspace?.panels?.['train/m00']?.predicted?.wide && window.steplake.workspace.panels['train/m00'].emerged, null, { timeout: 60000 });
  const restoredSettings = await page.evaluate(() => window.steplake.workspace.panels['train/m00']);
  check(restoredSettings.weight === 0 && restoredSettings.emerged.wide === 1901 && restoredSettings.predicted.wide.final_step === 10000,
    `the link restores smoothing, emergence and prediction: ${JSON.stringify(restoredSettings)}`);

  // Wall time as the shared x axis: times of day on the axis; a drag over
  // the middle half of the time zooms every panel to the steps logged then
  // (step s was logged at 1,700,000,000 + s seconds).
  await page.goto('about:blank');
  await page.goto(`${url}/#/workspace?runs=wide&filter=%5Etrain%2Fm0%5B01%5D%24&x=wall_time`);
  await page.waitForFunction(() => ['train/m00', 'train/m01'].every((n) => window.steplake.workspace?.panels?.[n]?.xTicks), null, { timeout: 60000 });
  const byTime = await page.evaluate(() => window.steplake.workspace.panels['train/m00']);
  check(byTime.x === 'wall_time' && byTime.xTicks.every((t) => /\d:\d\d/.test(t)), `wall-time panel: ${byTime.x}, ticks ${byTime.xTicks}`);
  check(await page.locator('#workspace-x').inputValue() === 'wall_time', 'the axis is chosen from the URL');
  const timeBox = await page.locator(`${m00Panel} .u-over`).boundingBox();
  await page.mouse.move(timeBox.x + timeBox.width * 0.25, timeBox.y + timeBox.height / 2);
  await page.mouse.down();
  await page.mouse.move(timeBox.x + timeBox.width * 0.75, timeBox.y + timeBox.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => window.steplake.workspace.panels['train/m01'].start > 0, null, { timeout: 60000 });
  const timeZoom = await page.evaluate(() => ({ m01: window.steplake.workspace.panels['train/m01'], link: location.href }));
  const zoomStart = Number(new URL(timeZoom.link.replace('#/workspace', '')).searchParams.get('start'));
  const zoomEnd = Number(new URL(timeZoom.link.replace('#/workspace', '')).searchParams.get('end'));
  check(Math.abs(zoomStart - 500) < 40 && Math.abs(zoomEnd - 1500) < 40 && timeZoom.m01.start === zoomStart && timeZoom.m01.x === 'wall_time',
    `a drag over wall time zooms to steps ${zoomStart}..${zoomEnd}; m01 from ${timeZoom.m01.start}`);
  console.log(`workspace: per-panel smoothing, emergence at ${emerged.wide}, prediction ${wide.value.toPrecision(4)} at 10000; wall time zoom to steps ${zoomStart}..${zoomEnd}`);

  // The standing condition's event is flagged on its series' panel.
  await page.goto(`${url}/#/workspace?runs=big&filter=%5Eloss%24`);
  await page.waitForFunction(() => window.steplake.workspace?.eventsDrawn?.loss !== undefined, null, { timeout: 60000 });
  check(await page.evaluate(() => window.steplake.workspace.eventsDrawn.loss) === 1, 'the spike event is flagged on the loss panel');
  // Spikes and changepoints on request: a few changepoint lines at most.
  await page.check('#workspace-markers');
  await page.waitForFunction(() => window.steplake.workspace.changepointsDrawn.loss !== undefined, null, { timeout: 60000 });
  const markerLines = await page.evaluate(() => window.steplake.workspace.changepointsDrawn.loss);
  check(markerLines <= 5 && page.url().includes('markers=1'), `workspace markers: ${markerLines} changepoint lines, ${page.url()}`);
  // The events list: one event, and a click on it shows its panel zoomed
  // to the steps around it, the spike drawn at full resolution.
  check(await page.evaluate(() => window.steplake.workspace.eventsListed) === 1, 'the workspace lists the event');
  await page.click('#workspace-events summary');
  await page.click('#workspace-events tr.event-row');
  await page.waitForFunction(() => window.steplake.workspace.panels.loss?.start === 31237, null, { timeout: 60000 });
  const aroundEvent = await page.evaluate(() => window.steplake.workspace.panels.loss);
  check(!aroundEvent.downsampled && aroundEvent.end === 31437 && aroundEvent.max === 1000, `the event's panel, zoomed: ${JSON.stringify(aroundEvent)}`);
  check(page.url().includes('filter=%5Eloss%24') && page.url().includes('start=31237'), `the event's view is in the URL: ${page.url()}`);

  // Group by a configuration key: small and wide (lr 0.01) become one line,
  // their mean, with their min–max as its band; big (lr 0.001) its own.
  await page.goto(`${url}/#/workspace?runs=big,small,wide&group=lr&filter=%5Eacc%24`);
  await page.waitForFunction(() => window.steplake.workspace?.panels?.acc?.shown, null, { timeout: 60000 });
  const groups = await page.evaluate(() => window.steplake.workspace.panels.acc.shown);
  check(JSON.stringify(groups) === JSON.stringify([
    { label: 'lr=0.001', runs: 1, x: 0, line: 0.5, lo: 0.5, hi: 0.5 },
    { label: 'lr=0.01', runs: 2, x: 0, line: 1, lo: 0.5, hi: 1.5 }]), `groups by lr: ${JSON.stringify(groups)}`);
  check(await page.locator('#group-by').inputValue() === 'lr', 'the group key is chosen from the URL');

  // Live: a point written while the panel is open reaches it through the
  // stream, and only the new point travels, though the panel's other run
  // ("big", a million steps) is far ahead of "small".
  await page.goto(`${url}/#/workspace?runs=big,small&filter=%5Eloss%24`);
  await page.waitForFunction(() => (window.steplake.workspace?.following || []).includes('loss'), null, { timeout: 60000 });
  await page.waitForTimeout(300);
  const written = writePoint('small', 'loss,5001,43');
  const acknowledged = Date.now();
  check(written.status === 0, `steplake write: ${written.stderr}`);
  await page.waitForFunction(() => window.steplake.workspace.arrivals['small/loss/5001'], null, { timeout: 30000 });
  const live = await page.evaluate(() => ({
    arrived: window.steplake.workspace.arrivals['small/loss/5001'],
    panel: window.steplake.workspace.panels.loss,
    arrivals: Object.keys(window.steplake.workspace.arrivals),
    received: window.steplake.workspace.received,
  }));
  check(live.panel.lastValue === 43, `the live point joined the panel: ${JSON.stringify(live.panel)}`);
  check(live.arrivals.join() === 'small/loss/5001' && live.received === 1, `only the new point travelled: ${live.arrivals}, ${live.received} points received`);
  // A panel's predicted course is fitted again once live points arrive.
  await page.goto('about:blank');
  await page.goto(`${url}/#/workspace?runs=small&filter=%5Eloss%24&predict=loss~20000~`);
  await page.waitForFunction(() => (window.steplake.workspace?.following || []).includes('loss')
    && window.steplake.workspace.panels.loss?.fits === 1, null, { timeout: 60000 });
  await page.waitForTimeout(300);
  check(writePoint('small', 'loss,5002,0.2').status === 0, 'steplake write');
  await page.waitForFunction(() => window.steplake.workspace.panels.loss.fits === 2, null, { timeout: 60000 });
  const refitted = await page.evaluate(() => window.steplake.workspace.panels.loss.predicted.small);
  check(refitted.final_step === 20000 && Number.isFinite(refitted.value), `the prediction is fitted again after the live point: ${JSON.stringify(refitted)}`);
  console.log(`live: a point acknowledged at the server was drawn ${live.arrived - acknowledged} ms later`);

  // The SQL box: a statement from a link runs; its result is a table and a
  // chart over steps (not dates) that holds the spike; an edited statement
  // runs with Ctrl+Enter and goes into the URL; a statement that would
  // change data is refused with the reason shown.
  await page.goto('about:blank');
  const spikeSql = "SELECT step, value FROM scalars WHERE run_id = 'wide' AND name = 'train/m07' ORDER BY step";
  await page.goto(`${url}/#/sql?${new URLSearchParams({ q: spikeSql })}`);
  await page.waitForFunction(() => window.steplake.sql, null, { timeout: 60000 });
  const sqlResult = await page.evaluate(() => window.steplake.sql);
  check(sqlResult.rowCount === 2000 && sqlResult.shownRows === 1000 && sqlResult.chart?.points === 2000
    && sqlResult.chart.max === 500 && sqlResult.chart.timeAxis === false, `the SQL box: ${JSON.stringify(sqlResult)}`);
  await page.fill('textarea', "SELECT name, count(*) AS n FROM scalars WHERE run_id = 'wide' GROUP BY name");
  await page.press('textarea', 'Control+Enter');
  await page.waitForFunction(() => window.steplake.sql?.rowCount === 32, null, { timeout: 60000 });
  check(page.url().includes('q=SELECT+name%2C+count'), `the statement run is in the URL: ${page.url()}`);
  check(await page.evaluate(() => window.steplake.sql.chart) === null, 'a result without steps is not charted');
  const errorsBefore = errors.length;
  await page.fill('textarea', 'DELETE FROM scalars');
  await page.press('textarea', 'Control+Enter');
  await page.waitForFunction(() => window.steplake.sql?.error, null, { timeout: 60000 });
  const refused = await page.locator('.error').textContent();
  check(refused.length > 0 && refused === await page.evaluate(() => window.steplake.sql.error), `the refusal is shown: ${refused}`);
  // The browser logs the refused request (403) as a console error: expected.
  errors.splice(errorsBefore, errors.length - errorsBefore, ...errors.slice(errorsBefore).filter((e) => !/status of 403/.test(e)));
  console.log(`SQL box: 2,000 rows charted over steps, Ctrl+Enter, refused: ${refused}`);

  // The tensors page: steps on the x axes (not dates), and a heatmap with a
  // step axis and a value axis spanning the tensor's overall [min, max].
  await page.goto(`${url}/#/tensors?run=small&name=layer.w`);
  await page.waitForFunction(() => window.steplake.heatmap?.columns > 0, null, { timeout: 60000 });
  const tensors = await page.evaluate(async () => ({
    plot: window.steplake.tensorPlot,
    heatmap: window.steplake.heatmap,
    stats: await (await fetch('/api/tensor_stats?run=small&name=layer.w')).json(),
  }));
  check(tensors.plot.timeAxis === false, 'the statistics chart has a step axis, not a time axis');
  check(tensors.heatmap.columns === 3 && tensors.heatmap.steps.join() === '0,2000',
    `heatmap columns and steps: ${JSON.stringify(tensors.heatmap)}`);
  check(tensors.heatmap.xTicks.join() === '0,500,1000,1500,2000', `step ticks: ${tensors.heatmap.xTicks}`);
  const [lo, hi] = tensors.heatmap.values;
  check(lo === Math.min(...tensors.stats.min) && hi === Math.max(...tensors.stats.max),
    `value axis ${lo}..${hi} spans the tensor's min and max`);
  check(tensors.heatmap.yTicks.length >= 3 && tensors.heatmap.yTicks.every((t) => Number(t) >= lo && Number(t) <= hi),
    `value ticks: ${tensors.heatmap.yTicks}`);
  await page.screenshot({ path: `${artifacts}/tensors.png` });
  console.log(`tensors page: steps ${tensors.heatmap.xTicks}, values ${tensors.heatmap.yTicks}`);
  check(errors.length === 0, `console errors: ${errors.join(' | ')}`);
} catch (error) {
  console.log(`FAILED: ${error.stack || error}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
