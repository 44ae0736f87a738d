// SPDX-License-Identifier: MIT
// Drives the chat page (examples/chat/index.html, served by examples/chat) in headless
// Chromium through playwright-core, as two people would: alice and bob log in and join a
// room, bob gets what alice said before in the history, alice sees bob arrive, bob sees alice
// typing, a private message, and alice sees bob leave when his tab closes. Every wait is
// bounded; prints one JSON line {"steps": [...], "errors": [...]} and exits 0 when all passed.
// Usage: node chat_browser.js CHAT_URL CHROMIUM
'use strict';
const { chromium } = require('playwright-core');

const [chatUrl, executablePath] = process.argv.slice(2);
const WAIT = { timeout: 10000 };
const steps = [];

const logHas = (page, text) =>
  page.waitForFunction((t) => document.getElementById('log').textContent.includes(t), text, WAIT);
const users = (page) => page.$$eval('#users li', (lis) => lis.map((li) => li.textContent));

async function enter(page, name, room) {
  await page.goto(chatUrl);
  await page.waitForFunction(() => document.getElementById('state').textContent.startsWith('connected'),
                             null, WAIT);
  await page.fill('#name', name);
  await page.click('#login button');
  await page.waitForFunction((n) => document.getElementById('state').textContent === `logged in as ${n}`,
                             name, WAIT);
  await page.fill('#room', room);
  await page.click('#join button');
  await logHas(page, `joined #${room}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const errors = [];
  try {
    const alice = await browser.newPage();
    const bob = await browser.newPage();
    for (const page of [alice, bob]) page.on('pageerror', (e) => errors.push(String(e)));

    await enter(alice, 'alice', 'lobby');
    await alice.fill('#text', 'said before bob came');
    await alice.click('#say button');
    await logHas(alice, '#lobby alice: said before bob came');
    steps.push('alice said');

    await enter(bob, 'bob', 'lobby');
    await logHas(bob, '1 earlier messages:');
    await logHas(bob, '#lobby alice: said before bob came');
    await logHas(alice, 'bob joined #lobby');
    await alice.waitForFunction(() => document.querySelectorAll('#users li').length === 2, null, WAIT);
    steps.push({ history: true, users: await users(alice) });

    await alice.type('#text', 'hi');
    await bob.waitForFunction(() => document.getElementById('typing').textContent === 'alice typing...',
                              null, WAIT);
    steps.push('typing');

    await bob.fill('#text', '/msg alice psst');
    await bob.click('#say button');
    await logHas(alice, '(private) bob -> alice: psst');
    await logHas(bob, '(private) bob -> alice: psst');
    steps.push('private');

    await bob.close();
    await logHas(alice, 'bob left #lobby');
    steps.push({ left: true, users: await users(alice) });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ steps, errors }));
  process.exit(errors.length ? 1 : 0);
})().catch((e) => {
  console.log(JSON.stringify({ steps, errors, failure: e && e.stack || String(e) }));
  process.exit(1);
});
