// SPDX-License-Identifier: MIT
// Drives headless Chromium (Debian's, through playwright-core) on the demo chat that `make
// run` serves (www/index.html, socket.io-client against the eddy program), for
// tests/integration/test_demo_chat.py. One JSON line per step:
//   {"step":"online"}   ann and bob, each in their own browser context, are both listed as
//                       online in #general on both pages;
//   {"step":"chatted"}  each typed a message; both pages show both, delivered;
//   {"step":"history"}  cy opened the page later: the join's history showed it the two
//                       messages, and the others saw cy come online;
//   {"step":"left"}     cy closed its page: the others saw cy go;
//   {"step":"rooms"}    bob went to #random (alone there; ann saw him go), said something
//                       ann did not get, and came back to #general and its history;
//   {"step":"restart"}  ready: the test now restarts the program;
//   {"step":"banner"}   ann's page shows the reconnecting banner; ann typed COUNT messages
//                       meanwhile (still pending);
//   {"step":"done"}     both pages reconnected and show every message, delivered, once.
// Usage: node chat_demo_browser.js BASE_URL CHROMIUM COUNT
'use strict';
const { chromium } = require('playwright-core');

const [base, executablePath, countText] = process.argv.slice(2);
const count = Number(countText);
const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
const WAIT = { timeout: 30000 };

const messages = (page) => page.$$eval('#messages li', (lis) =>
  lis.map((li) => (li.className === 'pending' ? 'pending ' : '') + li.textContent));
const online = (page) => page.$$eval('#online li', (lis) => lis.map((li) => li.textContent));
const banner = (page) => page.$eval('#banner', (b) => (b.hidden ? null : b.textContent));

async function open(browser, name, errors) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
  await page.goto(`${base}/?name=${name}&room=general`);
  return page;
}

async function type(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

// Waits until page lists exactly want (as the page shows them) in #online or #messages.
function until(page, selector, want) {
  return page.waitForFunction(([sel, w]) => {
    const got = Array.from(document.querySelectorAll(sel + ' li'),
                           (li) => (li.className === 'pending' ? 'pending ' : '') + li.textContent);
    return JSON.stringify(got) === JSON.stringify(w);
  }, [selector, want], WAIT);
}

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const errors = [];
  try {
    const ann = await open(browser, 'ann', errors);
    const bob = await open(browser, 'bob', errors);
    for (const page of [ann, bob]) await until(page, '#online', ['ann', 'bob']);
    step('online', { ann: await online(ann), bob: await online(bob) });

    await type(ann, 'hello from ann');
    await until(bob, '#messages', ['ann: hello from ann']);
    await type(bob, 'hi ann');
    const both = ['ann: hello from ann', 'bob: hi ann'];
    for (const page of [ann, bob]) await until(page, '#messages', both);
    step('chatted', { ann: await messages(ann), bob: await messages(bob) });

    const cy = await open(browser, 'cy', errors);
    await until(cy, '#messages', both);
    await until(ann, '#online', ['ann', 'bob', 'cy']);
    step('history', { cy: await messages(cy), ann: await online(ann) });
    await cy.context().close();
    for (const page of [ann, bob]) await until(page, '#online', ['ann', 'bob']);
    step('left', { ann: await online(ann), bob: await online(bob) });

    await bob.click('#rooms button:has-text("#random")');
    await until(bob, '#online', ['bob']);
    await until(ann, '#online', ['ann']);
    await type(bob, 'in random');
    await until(bob, '#messages', ['bob: in random']);
    const annSaw = await messages(ann);
    await bob.click('#rooms button:has-text("#general")');
    await until(bob, '#messages', both);
    for (const page of [ann, bob]) await until(page, '#online', ['ann', 'bob']);
    step('rooms', { annSaw, bob: await messages(bob) });

    step('restart');
    await ann.waitForFunction(() => {
      const b = document.getElementById('banner');
      return !b.hidden && b.textContent.startsWith('Reconnecting');
    }, null, WAIT);
    const shown = await banner(ann);
    for (let i = 0; i < count; i++) await type(ann, `during ${i}`);
    step('banner', { banner: shown, ann: await messages(ann), state: await banner(ann) });

    const all = both.concat(Array.from({ length: count }, (_, i) => `ann: during ${i}`));
    for (const page of [ann, bob]) await until(page, '#messages', all);
    for (const page of [ann, bob]) {
      await page.waitForFunction(() => document.getElementById('banner').hidden, null, WAIT);
      await until(page, '#online', ['ann', 'bob']);
    }
    step('done', { ann: await messages(ann), bob: await messages(bob),
                   online: await online(bob), banners: [await banner(ann), await banner(bob)],
                   errors });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e && e.stack || String(e));
  process.exit(1);
});
