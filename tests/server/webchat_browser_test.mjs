// Drives the built-in web chat (GET /) in Debian's chromium, headless, with puppeteer-core:
// node webchat_browser_test.mjs BASE_URL API_KEY SCREENSHOT.png. Prints one line per step and
// exits 0 when every step passes. The server needs an API key (the page must ask for it) and
// runs a DeepSeek-R1 template that opens <think> when the page's Reasoning switch is on.
import puppeteer from 'puppeteer-core';
import assert from 'node:assert/strict';

const [base, apiKey, screenshot] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // As root in a container chromium's sandbox cannot start; the page is our own.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const started = Date.now();
let failed = false;

async function step(name, fn) {
  if (failed) return;
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? `: ${detail}` : ''} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    failed = true;
  }
}

const page = await browser.newPage();
await page.setViewport({ width: 1100, height: 720 });
page.on('pageerror', (err) => console.error(`page error: ${err}`));
// Sends a message and waits until its reply (the n-th) has ended; the reply's error text, if any.
async function sendAndWait(text, n) {
  await page.type('#input', text);
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#messages .msg.assistant').length === n &&
                                    !document.getElementById('send').disabled, { timeout: 20000 }, n);
  return page.$eval('#messages .msg.assistant:last-child', (el) => el.querySelector('.error')?.textContent ?? '');
}
const lastReply = () => page.$eval('#messages .msg.assistant:last-child .content', (el) => el.textContent);
const setValue = (id, value) => page.$eval(id, (el, v) => { el.value = v; el.dispatchEvent(new Event('change')); }, value);

// Records the length of the last reply's text at every DOM change, to see it grow.
async function watchReply() {
  await page.evaluate(() => {
    window.replyLengths = [];
    new MutationObserver(() => {
      const el = document.querySelector('#messages .msg.assistant:last-child');
      if (el) window.replyLengths.push((el.querySelector('.content')?.textContent ?? '').length +
                                      (el.querySelector('.reasoning')?.textContent ?? '').length);
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
  });
}

await step('open / and give the API key the server asked for (401)', async () => {
  await page.goto(`${base}/`, { waitUntil: 'load' });
  await page.waitForSelector('#key-dialog[open]', { timeout: 5000 });
  await page.type('#key-input', apiKey);
  await page.click('#key-dialog button');
  await page.waitForSelector('#model option', { timeout: 5000 });
  return `model ${await page.$eval('#model', (el) => el.value)}`;
});

await step('send a message, see the reply stream in, stop it mid-stream', async () => {
  await setValue('#max_tokens', '100000');
  await watchReply();
  await page.type('#input', 'Tell me a long story');
  await page.keyboard.press('Enter');
  // The text grows in steps while the server streams (three different partial lengths).
  await page.waitForFunction(() => new Set(window.replyLengths.filter((n) => n > 0)).size >= 3, { timeout: 10000 });
  assert.ok(await page.$eval('#send', (el) => el.disabled), 'the reply ended before it could be stopped');
  await page.click('#stop');
  await page.waitForFunction(() => !document.getElementById('send').disabled, { timeout: 5000 });
  assert.equal(await page.$eval('#status', (el) => el.textContent), 'Stopped.');
  const stopped = (await lastReply()).length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await lastReply()).length, stopped, 'text kept arriving after stop');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const cancelled = Number(/^fathom_requests_cancelled_total (\S+)/m.exec(metrics)[1]);
  assert.ok(cancelled >= 1, 'the server did not see the request cancelled');
  const steps = new Set(await page.evaluate(() => window.replyLengths.filter((n) => n > 0))).size;
  return `${steps} partial lengths seen; stopped at ${stopped} characters; fathom_requests_cancelled_total ${cancelled}`;
});

await step('a reply runs to its end', async () => {
  await setValue('#max_tokens', '40');
  assert.equal(await sendAndWait('Hello again', 2), '');
  const text = await lastReply();
  assert.ok(text.length > 0, 'empty reply');
  return `${text.length} characters`;
});

await step('reasoning arrives in a collapsible block', async () => {
  await page.click('#settings summary');
  await page.click('#think');
  assert.equal(await sendAndWait('Think about it', 3), '');
  const reasoning = await page.$eval('#messages .msg.assistant:last-child details.thinking .reasoning', (el) => el.textContent);
  assert.ok(reasoning.length > 0);
  await page.click('#messages .msg.assistant:last-child details.thinking summary');  // open it for the screenshot
  await page.click('#think');
  await page.click('#settings summary');
  return `${reasoning.length} characters of reasoning`;
});

await step('reload and find the conversation', async () => {
  await new Promise((r) => setTimeout(r, 2500));  // two metrics polls: the panel shows tokens/s
  await page.screenshot({ path: screenshot });
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('#conversations li', { timeout: 5000 });
  const titles = await page.$$eval('#conversations li span', (els) => els.map((e) => e.textContent));
  assert.deepEqual(titles, ['Tell me a long story']);
  const roles = await page.$$eval('#messages .msg', (els) => els.map((e) => e.className));
  assert.deepEqual(roles, ['msg user', 'msg assistant', 'msg user', 'msg assistant', 'msg user', 'msg assistant']);
  assert.ok(await page.$eval('#messages details.thinking', (el) => el.open), 'the opened reasoning block was not remembered');
  return `${roles.length} messages restored from localStorage`;
});

await step('markdown is rendered and model text never becomes HTML', async () => {
  await page.evaluate(() => {
    const text = 'Some **bold**, *em* and `code`:\n\n- one\n- two\n\n```\n<img src=x onerror="window.pwned=1">\n```\n<b>not bold</b>';
    const convs = JSON.parse(localStorage.getItem('fathom.conversations'));
    convs.unshift({ id: 'md', title: 'markdown', messages: [{ role: 'user', content: 'md' }, { role: 'assistant', content: text, reasoning: '' }] });
    localStorage.setItem('fathom.conversations', JSON.stringify(convs));
  });
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('#messages .msg.assistant pre code');
  const shape = await page.$eval('#messages .msg.assistant .content', (el) => ({
    strong: el.querySelector('strong')?.textContent, em: el.querySelector('em')?.textContent,
    code: el.querySelector('p code')?.textContent, items: el.querySelectorAll('ul li').length,
    pre: el.querySelector('pre code').textContent, img: el.querySelectorAll('img, b').length,
  }));
  assert.deepEqual(shape, { strong: 'bold', em: 'em', code: 'code', items: 2, pre: '<img src=x onerror="window.pwned=1">', img: 0 });
  assert.equal(await page.evaluate(() => window.pwned), undefined);
});

await browser.close();
if (failed) process.exitCode = 1;
