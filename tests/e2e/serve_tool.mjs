// serve_tool.mjs MODE [ARGS]: reads an OpenAI-style response on stdin for tests/e2e/serve_checks.sh.
//   text         a (chat) completion JSON body -> its text and a newline (as `OUT --prompt` ends)
//   sse          a server-sent event stream -> the text of its chunks and a newline; exit 1 unless
//                every event is "data: {json}", one has a finish_reason, and the last is "data: [DONE]"
//   field A.B    a JSON body -> that field (objects as JSON)
//   json STRING  STRING as a JSON string (to build request bodies)
import { readFileSync } from 'node:fs';

const [mode, arg] = process.argv.slice(2);
if (mode === 'json') {
  process.stdout.write(JSON.stringify(arg));
  process.exit(0);
}
const input = readFileSync(0, 'utf8');
const textOf = (choice) => choice.text ?? choice.message?.content ?? choice.delta?.content ?? '';
if (mode === 'text') {
  process.stdout.write(textOf(JSON.parse(input).choices[0]) + '\n');
} else if (mode === 'field') {
  let v = JSON.parse(input);
  for (const k of arg.split('.')) v = v?.[k];
  process.stdout.write((typeof v === 'object' ? JSON.stringify(v) : String(v)) + '\n');
} else if (mode === 'sse') {
  const events = input.split('\n\n').filter((e) => e.length > 0);
  let text = '', finish = null, done = false;
  for (const e of events) {
    if (done) { console.error('an event after [DONE]'); process.exit(1); }
    if (!e.startsWith('data: ')) { console.error(`not a data event: ${e}`); process.exit(1); }
    const data = e.slice(6);
    if (data === '[DONE]') { done = true; continue; }
    const j = JSON.parse(data);
    if (j.error) { console.error(`error event: ${data}`); process.exit(1); }
    for (const ch of j.choices) {
      text += textOf(ch);
      finish = ch.finish_reason ?? finish;
    }
  }
  if (!done || !finish) { console.error(`no ${done ? 'finish_reason' : '[DONE]'}`); process.exit(1); }
  process.stdout.write(text + '\n');
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
