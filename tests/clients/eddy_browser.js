// SPDX-License-Identifier: MIT
// Drives headless Chromium (Debian's, through playwright-core) for
// tests/integration/test_eddy_js.py, printing one JSON line per step:
//   {"step":"echoed"}  connected, a message went out and came back;
//   {"step":"queued"}  the page shows "reconnecting in N s" (the test stopped the server) and
//                      queued COUNT messages;
//   {"step":"done"}    reconnected (the test restarted the server) and every queued message
//                      came back; with what the page saw.
// Usage: node eddy_browser.js api|demo PAGE_URL CHROMIUM COUNT
//   api:  tests/clients/eddy_page.html, the ES module's API (emit/on, send);
//   demo: www/echo.html, typing into the message box of the plain-script demo.
'use strict';
const { chromium } = require('playwright-core');

const [mode, pageUrl, executablePath, countText] = process.argv.slice(2);
const count = Number(countText);
const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
const statusIs = (prefix) => document.getElementById(prefix[0]).textContent.startsWith(prefix[1]);

async function api(page, errors) {
  await page.waitForFunction(() => window.log && window.log.echoed !== null, null,
                             { timeout: 20000 });
  step('echoed', { echoed: await page.evaluate(() => window.log.echoed) });
  await page.waitForFunction(statusIs, ['state', 'reconnecting in'], { timeout: 20000 });
  step('queued', await page.evaluate((n) => window.queue(n), count));
  await page.waitForFunction((n) => window.log.received.length >= n, count, { timeout: 30000 });
  const log = await page.evaluate(() => window.log);
  step('done', { log, state: await page.evaluate(() => window.eddy.state),
                 queueSize: await page.evaluate(() => window.eddy.queueSize), errors });
}

const items = (page) => page.$$eval('#messages li', (lis) => lis.map((li) => li.textContent));

async function type(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

async function demo(page, errors) {
  await page.waitForFunction(statusIs, ['status', 'connected'], { timeout: 20000 });
  await type(page, 'first');
  await page.waitForFunction(() => document.querySelectorAll('#messages li').length >= 1, null,
                             { timeout: 20000 });
  step('echoed', { items: await items(page) });
  await page.waitForFunction(statusIs, ['status', 'reconnecting in'], { timeout: 20000 });
  const status = await page.textContent('#status');
  for (let i = 0; i < count; i++) await type(page, `offline ${i}`);
  step('queued', { status, queueSize: Number(await page.textContent('#queue')) });
  await page.waitForFunction((n) => document.querySelectorAll('#messages li').length >= n + 1,
                             count, { timeout: 30000 });
  step('done', { items: await items(page), status: await page.textContent('#status'),
                 queueSize: Number(await page.textContent('#queue')), errors });
}

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
    await (mode === 'demo' ? demo : api)(page, errors);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
