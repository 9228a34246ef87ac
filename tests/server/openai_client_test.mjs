// Drives a running `fathom serve` with the official `openai` npm package, the way applications
// do: node openai_client_test.mjs BASE_URL API_KEY MODEL. Exits 0 when every check passes.
// The server is expected to run with a DeepSeek-R1 chat template (prompts end in "<think>\n"),
// so chat answers carry reasoning_content.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

// With a fourth argument "tools" only the forced tool-call checks run (the C++ test drives
// them once per tool-call format, each on a server with that format's template).
const [baseURL, apiKey, model, mode] = process.argv.slice(2);
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

// Forced tool calls: the server opens the call in the prompt and generates the rest under a
// grammar made from the function's schema, so even a random-weight model's arguments validate
// (checked by ajv), and the call is closed in the template's format.
const strictTools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 },
                                                unit: { enum: ['celsius', 'fahrenheit'] } },
                  required: ['city'], additionalProperties: false } } },
  { type: 'function', function: { name: 'add', description: 'Add two numbers',
    parameters: { type: 'object', properties: { a: { type: 'integer', minimum: -1000, maximum: 1000 },
                                                b: { anyOf: [{ type: 'number' }, { type: 'null' }] },
                                                tags: { type: 'array', items: { enum: ['x', 'y'] }, maxItems: 3 } },
                  required: ['a', 'b'], additionalProperties: false } } },
];
const forcedMessages = [{ role: 'user', content: 'Weather in Paris? And 2 + 3?' }];

async function checkForcedToolCalls() {
  const Ajv = (await import('ajv')).default;
  const ajv = new Ajv({ strict: false });
  const validate = Object.fromEntries(strictTools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));
  const api = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
  const cases = [
    ...strictTools.map((t) => ({ name: `named ${t.function.name}`, tool_choice: { type: 'function', function: { name: t.function.name } },
                                 expect: t.function.name })),
    { name: 'required', tool_choice: 'required', expect: null },
  ];
  const validCall = (call, expect) => {
    assert.equal(call.type, 'function');
    assert.match(call.id, /^call_[0-9A-Za-z]{24}$/);
    if (expect) assert.equal(call.function.name, expect);
    assert.ok(validate[call.function.name], `unknown function ${call.function.name}`);
    const args = JSON.parse(call.function.arguments);
    assert.ok(validate[call.function.name](args), `${call.function.arguments}: ${ajv.errorsText(validate[call.function.name].errors)}`);
  };
  for (const c of cases) {
    await check(`tool_choice ${c.name}: arguments validate (ajv), plain and streamed`, async () => {
      const names = new Set();
      let example = '';
      for (let seed = 0; seed < 2; seed++) {
        const body = { model, messages: forcedMessages, tools: strictTools, tool_choice: c.tool_choice, max_tokens: 400,
                       temperature: 1, seed };
        const r = await client.chat.completions.create(body);
        const choice = r.choices[0];
        assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
        assert.equal(choice.message.tool_calls.length, 1);
        validCall(choice.message.tool_calls[0], c.expect);
        names.add(choice.message.tool_calls[0].function.name);
        example = `${choice.message.tool_calls[0].function.name}(${choice.message.tool_calls[0].function.arguments})`;
        // Streamed, assembled by the SDK's own helper: the same call.
        const final = await api.stream(body).finalChatCompletion();
        const streamed = final.choices[0];
        assert.equal(streamed.finish_reason, 'tool_calls');
        assert.equal(streamed.message.tool_calls.length, 1);
        validCall(streamed.message.tool_calls[0], c.expect);
        assert.deepEqual(streamed.message.tool_calls[0].function, choice.message.tool_calls[0].function);
      }
      console.log(`     ${c.name}: functions called ${[...names].join(', ')}; e.g. ${JSON.stringify(example)}`);
    });
  }
  await check('parallel_tool_calls false is honoured (one call)', async () => {
    const r = await client.chat.completions.create({ model, messages: forcedMessages, tools: strictTools, tool_choice: 'required',
                                                     parallel_tool_calls: false, max_tokens: 400, temperature: 1, seed: 9 });
    assert.equal(r.choices[0].message.tool_calls.length, 1);
  });
}

if (mode === 'tools') {
  await checkForcedToolCalls();
  process.exit(process.exitCode ?? 0);
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
  await assert.rejects(client.chat.completions.create({ model, messages, n: 17 }), (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 400);
    assert.equal(err.param, 'n');
    return true;
  });
});

const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
];
const toolHistory = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
    function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"sky": "cloudy"}' },
  { role: 'user', content: 'And in Rome?' },
];

await check('tools and a tool-call history are accepted', async () => {
  const r = await client.chat.completions.create({ model, messages: toolHistory, tools, max_tokens: 4, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.ok(['stop', 'length', 'tool_calls'].includes(r.choices[0].finish_reason));
});

await checkForcedToolCalls();
await check('n = 3 gives three choices', async () => {
  const r = await client.chat.completions.create({ model, messages, n: 3, max_tokens: 4, temperature: 1, seed: 3, ignore_eos: true });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage.completion_tokens, 12);
});

const auth = { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` };
async function post(path, body) {
  const res = await fetch(`${baseURL}${path}`, { method: 'POST', headers: auth, body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

await check('/tokenize and /detokenize round trip', async () => {
  const { tokens } = await post('/tokenize', { content: 'Hello world' });
  assert.ok(tokens.length >= 2);
  const { content } = await post('/detokenize', { tokens });
  assert.equal(content, 'Hello world');
});

await check('logit_bias +100 makes greedy pick a token, -100 bans it', async () => {
  const { tokens } = await post('/tokenize', { content: ' banana' });
  assert.equal(tokens.length, 1);
  const base = { model, prompt: 'The weather today', max_tokens: 2, temperature: 0, ignore_eos: true };
  const up = await client.completions.create({ ...base, logit_bias: { [tokens[0]]: 100 } });
  assert.equal(up.choices[0].text, ' banana banana');
  const first = (await client.completions.create({ ...base, max_tokens: 1 })).choices[0].text;
  const firstIds = (await post('/tokenize', { content: first })).tokens;
  const banned = await client.completions.create({ ...base, max_tokens: 1, logit_bias: { [firstIds[0]]: -100 } });
  assert.notEqual(banned.choices[0].text, first);
});

// Structured output: the model's words are noise (random weights), so only the grammar makes
// them valid. 100 responses, each checked by an independent validator (ajv).
const schemas = [
  { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 999 },
                                  color: { enum: ['red', 'green', 'blue'] } },
    required: ['ok', 'n', 'color'], additionalProperties: false },
  { type: 'object', properties: { city: { type: 'string', maxLength: 12 },
                                  where: { type: 'object', properties: { lat: { type: 'integer', minimum: -90, maximum: 90 },
                                                                          lon: { type: 'integer', minimum: -180, maximum: 180 } },
                                           required: ['lat', 'lon'], additionalProperties: false },
                                  tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 4 } },
    required: ['city', 'where', 'tags'], additionalProperties: false },
  { type: 'object', properties: { answer: { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'boolean' }, { const: 'none' }] },
                                  day: { type: 'string', format: 'date' } },
    required: ['answer', 'day'], additionalProperties: false },
];
await check('response_format json_schema: 100 of 100 responses validate (ajv)', async () => {
  const Ajv = (await import('ajv')).default;
  const addFormats = (await import('ajv-formats')).default;
  const ajv = new Ajv({ strict: false });
  addFormats(ajv);
  const validators = schemas.map((schema) => ajv.compile(schema));
  let valid = 0;
  const failures = [];
  for (let i = 0; i < 100; i++) {
    const k = i % schemas.length;
    const r = await client.chat.completions.create({
      model, messages: [{ role: 'user', content: `Item ${i}` }], max_tokens: 300, temperature: 1, seed: i,
      response_format: { type: 'json_schema', json_schema: { name: `s${k}`, strict: true, schema: schemas[k] } } });
    let doc;
    try { doc = JSON.parse(r.choices[0].message.content); } catch { doc = undefined; }
    if (doc !== undefined && validators[k](doc)) valid++;
    else failures.push(`#${i} (${r.choices[0].finish_reason}): ${r.choices[0].message.content}`);
  }
  assert.equal(valid, 100, failures.slice(0, 3).join('\n'));
});

await check('wrong API key surfaces as AuthenticationError (401)', async () => {
  const intruder = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(intruder.chat.completions.create({ model, messages, max_tokens: 1 }), (err) => {
    assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}`);
    assert.equal(err.status, 401);
    return true;
  });
});
