// Drives headless Chromium (Debian's, through playwright-core) through eddy_page.html for
// tests/integration/test_eddy_js.py, printing one JSON line per step:
//   {"step":"echoed"}  connected, an event went out and came back;
//   {"step":"queued"}  the page shows "reconnecting in N s" (the test stopped the server) and
//                      queued COUNT messages;
//   {"step":"done"}    reconnected (the test restarted the server) and every queued message
//                      came back, in order; with the page's log.
// Usage: node eddy_browser.js PAGE_URL CHROMIUM COUNT
'use strict';
const { chromium } = require('playwright-core');

const [pageUrl, executablePath, countText] = process.argv.slice(2);
const count = Number(countText);
const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.log && window.log.echoed !== null, null,
                               { timeout: 20000 });
    step('echoed', { echoed: await page.evaluate(() => window.log.echoed) });
    await page.waitForFunction(
      () => document.getElementById('state').textContent.startsWith('reconnecting in'), null,
      { timeout: 20000 });
    const queued = await page.evaluate((n) => window.queue(n), count);
    step('queued', queued);
    await page.waitForFunction((n) => window.log.received.length >= n, count,
                               { timeout: 30000 });
    const log = await page.evaluate(() => window.log);
    step('done', { log, state: await page.evaluate(() => window.eddy.state),
                   queueSize: await page.evaluate(() => window.eddy.queueSize), errors });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
