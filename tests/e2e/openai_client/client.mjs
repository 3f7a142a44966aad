// client.mjs BASE_URL API_KEY PROMPT N: the official openai npm client against `OUT serve`
// (tests/e2e/serve_checks.sh). Runs a completion, a streamed completion, a chat completion (plain
// and streamed: the text, or the error when the model has no chat template), lists the models and
// makes one call with a wrong key; prints what it got as one JSON line.
import OpenAI from 'openai';

const [base, key, prompt, n] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
const out = {};
const params = { model: 'm', max_tokens: Number(n), temperature: 0 };

const c = await client.completions.create({ ...params, prompt });
out.completion = c.choices[0].text;
out.finish_reason = c.choices[0].finish_reason;
out.usage = c.usage;

let text = '';
const stream = await client.completions.create({ ...params, prompt, stream: true });
for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
out.stream = text;

const messages = [{ role: 'user', content: prompt }];
try {
  const r = await client.chat.completions.create({ ...params, messages });
  out.chat = r.choices[0].message.content;
  let t = '';
  const cs = await client.chat.completions.create({ ...params, messages, stream: true });
  for await (const chunk of cs) t += chunk.choices[0]?.delta?.content ?? '';
  out.chat_stream = t;
} catch (e) {
  out.chat_error = { status: e.status, code: e.code, message: e.message };
}

out.models = (await client.models.list()).data.map((m) => m.id);

try {
  await new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list();
  out.wrong_key = 'accepted';
} catch (e) {
  out.wrong_key = e.status;
}
console.log(JSON.stringify(out));
