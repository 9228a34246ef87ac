// Drives a running `fathom serve` with the official `openai` npm package, the way applications
// do: node openai_client_test.mjs BASE_URL API_KEY MODEL. Exits 0 when every check passes.
// The server is expected to run with a DeepSeek-R1 chat template (prompts end in "<think>\n"),
// so chat answers carry reasoning_content.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'user', content: 'What is 2 + 2?' }];
// The test template opens <think> only when asked (extra body fields pass through the SDK).
const thinking = { chat_template_kwargs: { enable_thinking: true } };

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (err) {
    console.error(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 1;
  }
}

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, [model]);
});

let plain;
await check('chat non-streaming with usage and reasoning_content', async () => {
  plain = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, ignore_eos: true, ...thinking });
  assert.equal(plain.object, 'chat.completion');
  const choice = plain.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  assert.equal(typeof choice.message.reasoning_content, 'string');
  assert.ok(choice.message.reasoning_content.length > 0);
  assert.equal(choice.finish_reason, 'length');
  assert.equal(plain.usage.completion_tokens, 8);
  assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);
});

await check('chat streaming with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, ignore_eos: true, stream: true, ...thinking,
    stream_options: { include_usage: true },
  });
  let content = '', reasoning = '', finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role ??= c.delta.role ?? null;
      content += c.delta.content ?? '';
      reasoning += c.delta.reasoning_content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(finish, 'length');
  assert.equal(content, plain.choices[0].message.content);
  assert.equal(reasoning, plain.choices[0].message.reasoning_content);
  assert.deepEqual(usage, plain.usage);
});

await check('completions with a stop string', async () => {
  const base = { model, prompt: 'The weather today', max_tokens: 24, temperature: 0, ignore_eos: true };
  const full = (await client.completions.create(base)).choices[0].text;
  const m = /[A-Za-z]{2}/.exec(full.slice(2));
  assert.ok(m, `no ASCII pair in ${JSON.stringify(full)}`);
  const stop = m[0];
  const cut = await client.completions.create({ ...base, stop: [stop] });
  assert.equal(cut.choices[0].finish_reason, 'stop');
  assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
});

await check('bad parameter surfaces as BadRequestError (400)', async () => {
  await assert.rejects(client.chat.completions.create({ model, messages, n: 2 }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'n');
    return true;
  });
});

await check('wrong API key surfaces as AuthenticationError (401)', async () => {
  const intruder = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(intruder.chat.completions.create({ model, messages, max_tokens: 1 }), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 401);
    return true;
  });
});
