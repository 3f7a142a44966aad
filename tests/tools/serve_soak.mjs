// serve_soak.mjs URL SECONDS CLIENTS [MAX_TOKENS] [SERVER_PID]: a soak of `OUT serve` (not in CI).
// CLIENTS loops, each sending streaming completions back to back for SECONDS; prints requests
// served, errors, time to first token and inter-token latency (p50/p99, ms), aggregate generated
// tokens/s, and the server's peak resident memory (VmHWM of SERVER_PID) at the end.
import { readFileSync } from "node:fs";

const [url, seconds, clients, maxTokens = "64", pid] = process.argv.slice(2);
if (!url || !seconds || !clients) {
  console.error("usage: node serve_soak.mjs URL SECONDS CLIENTS [MAX_TOKENS] [SERVER_PID]");
  process.exit(2);
}
const words = "the harbor ferry morning gulls town market bell river stone wind lantern".split(" ");
const ttft = [], itl = [];
let served = 0, errors = 0, tokens = 0;
const end = Date.now() + Number(seconds) * 1000;

async function one(i) {
  const prompt = Array.from({ length: 8 + (i % 24) }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(" ");
  const t0 = performance.now();
  let last = 0, first = true;
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: Number(maxTokens), temperature: 0.8, seed: i, stream: true }),
  });
  if (!res.ok) { errors++; await res.text(); return; }
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const now = performance.now();
      if (first) ttft.push(now - t0), first = false;
      else itl.push(now - last);
      last = now;
      tokens++;
    }
  }
  served++;
}

async function client(c) {
  for (let i = c; Date.now() < end; i += Number(clients)) {
    try { await one(i); } catch { errors++; }
  }
}

const t0 = Date.now();
await Promise.all(Array.from({ length: Number(clients) }, (_, c) => client(c)));
const dt = (Date.now() - t0) / 1000;
const pct = (v, p) => (v.length ? v.sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(p * v.length))] : 0);
let rss = "";
if (pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmHWM:\s+(\d+) kB/);
  if (m) rss = `, server peak RSS ${(Number(m[1]) / 1024).toFixed(0)} MB`;
}
console.log(`${clients} clients, ${dt.toFixed(0)} s: ${served} requests served, ${errors} errors, ` +
  `${tokens} stream events (${(tokens / dt).toFixed(1)}/s)${rss}`);
console.log(`time to first token ms: p50 ${pct(ttft, 0.5).toFixed(1)}, p99 ${pct(ttft, 0.99).toFixed(1)}; ` +
  `inter-token ms: p50 ${pct(itl, 0.5).toFixed(1)}, p99 ${pct(itl, 0.99).toFixed(1)}`);
