// SPDX-License-Identifier: MIT
// Drives the eddy admin page (/admin, cmd/admin/index.html) in headless Chromium (Debian's,
// through playwright-core) for tests/integration/test_daemon_admin.py, printing one JSON
// line per step:
//   {"step":"loaded","connections":N,"points":P}  logged in (HTTP Basic), the page shows
//                                                 figures and its chart has P points
//                                                 (also "broker": the broker card's text);
//   {"step":"changed","connections":M,"points":Q} the connection count changed from N (the
//                                                 test opened connections meanwhile) and
//                                                 the chart grew.
// Usage: node admin_browser.js URL CHROMIUM USER PASSWORD
'use strict';
const { chromium } = require('playwright-core');

const [url, executablePath, username, password] = process.argv.slice(2);
const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
const figures = () => ({
  connections: Number(document.getElementById('connections').textContent),
  points: Number(document.getElementById('chart-connections').dataset.points || 0),
  polylines: document.querySelectorAll('#chart-connections polyline').length,
  broker: document.getElementById('broker').textContent,
});

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ httpCredentials: { username, password } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    const response = await page.goto(url);
    if (response.status() !== 200) throw new Error(`HTTP ${response.status()}`);
    await page.waitForFunction(() => document.getElementById('state').textContent === 'live' &&
                               document.getElementById('chart-connections').dataset.points >= 2,
                               null, { timeout: 20000 });
    const first = await page.evaluate(figures);
    step('loaded', first);
    await page.waitForFunction((n) => Number(document.getElementById('connections').textContent) >= n,
                               first.connections + 3, { timeout: 20000 });
    await page.waitForFunction((p) => document.getElementById('chart-connections').dataset.points > p,
                               first.points, { timeout: 20000 });
    const origin = new URL(url).origin;
    step('changed', { ...(await page.evaluate(figures)), errors,
                      foreign: requests.filter((r) => !r.startsWith(origin)) });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
