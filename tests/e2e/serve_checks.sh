#!/usr/bin/env bash
# serve_checks.sh MOEC WORK [PART]: `OUT serve` end to end with real clients (curl, the openai npm
# package in tests/e2e/openai_client/, installed there with `npm ci` when node_modules is missing).
# PART (default all):
#   api    the tiny Mixtral compiled with --batch 8, served with --api-key and --metrics: /health,
#          /v1/models, completions plain and streamed (text == `OUT --prompt` alone, greedy), stop
#          strings, the openai client (completions, streaming, chat, models, wrong key), every error
#          status with its OpenAI-style body, then SIGTERM: exit 0
#   load   32 concurrent streaming requests on the 8 slots: all complete within the time bound, each
#          text equal to its prompt run alone; afterwards no slot or queue entry is left (/health, /metrics)
#   slow   a 24-layer tiny model with a 4096 context, 2 slots, --queue 1, so that requests last
#          seconds: the queue full (503), clients that disconnect free their slots at once, SIGTERM
#          lets a running request finish (exit 0), a second signal cancels it (503, exit 0)
set -u
moec=$1 work=$2 part=${3:-all}
here=$(cd "$(dirname "$0")" && pwd)
tool="$here/serve_tool.mjs"
rm -rf "$work" && mkdir -p "$work"
pid=
fail() {
  echo "FAIL: $*"
  [ -f "$work/srv.log" ] && tail -5 "$work/srv.log"
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  exit 1
}
command -v curl >/dev/null || { echo "SKIP: no curl"; exit 77; }
command -v node >/dev/null || { echo "SKIP: no node"; exit 77; }

# start EXE ARGS...: runs EXE serve --port 0 ARGS in the background; sets pid, port and url
start() {
  local exe=$1; shift
  : >"$work/srv.log"
  "$exe" serve --port 0 --threads 1 "$@" 2>"$work/srv.log" &
  pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$work/srv.log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the server exited: $(cat "$work/srv.log")"
    sleep 0.1
  done
  [ -n "$port" ] || fail "no 'listening on' line"
  url="http://127.0.0.1:$port"
}
# stop: SIGTERM, then the exit status must be 0
stop() {
  kill -TERM "$pid"
  wait "$pid"; local rc=$?
  pid=
  [ $rc -eq 0 ] || fail "exit status $rc after SIGTERM"
  grep -q "serve: stopped" "$work/srv.log" || fail "no 'serve: stopped'"
}
# call NAME CURL_ARGS...: the body to $work/NAME, the status to $work/NAME.status
call() {
  local name=$1; shift
  curl -s -o "$work/$name" -w '%{http_code}' "$@" >"$work/$name.status" 2>/dev/null
}
# solo NAME EXE PROMPT N: the text `EXE --prompt PROMPT -n N` prints, to $work/NAME.want
solo() { "$2" --prompt "$3" -n "$4" --threads 1 >"$work/$1.want" || fail "$2 --prompt '$3'"; }
same() { cmp -s "$work/$1" "$work/$2" || fail "$1 differs from $2: '$(head -c 200 "$work/$1")' vs '$(head -c 200 "$work/$2")'"; }
field() { node "$tool" field "$2" <"$work/$1"; }
health() { curl -s "$url/health" >"$work/health"; }

# expect_error NAME STATUS CODE CURL_ARGS...: the status and an OpenAI-style error body with that code
expect_error() {
  local name=$1 status=$2 code=$3; shift 3
  call "$name" "$@"
  [ "$(cat "$work/$name.status")" = "$status" ] || fail "$name: status $(cat "$work/$name.status"), expected $status: $(cat "$work/$name")"
  [ "$(field "$name" error.code)" = "$code" ] || fail "$name: error.code '$(field "$name" error.code)', expected '$code'"
  [ -n "$(field "$name" error.message)" ] && [ -n "$(field "$name" error.type)" ] || fail "$name: no message or type"
  echo "  $name: $status $code: $(field "$name" error.message)"
}

"$moec" synth "$work/m" --arch mixtral --preset tiny --seed 1 >/dev/null 2>&1 || fail "synth"
"$moec" compile "$work/m" -o "$work/m.exe" --batch 8 -q || fail "compile --batch 8"
exe=$work/m.exe

if [ "$part" = all ] || [ "$part" = api ]; then
  key=sk-test-key
  auth=(-H "Authorization: Bearer $key")
  start "$exe" --api-key "$key" --metrics --max-body 65536
  health
  [ "$(field health status)" = ok ] && [ "$(field health slots_total)" = 8 ] || fail "/health: $(cat "$work/health")"
  call models "${auth[@]}" "$url/v1/models"
  [ "$(field models data.0.id)" = m.exe ] || fail "/v1/models: $(cat "$work/models")"

  prompt="The harbor town woke slowly on the morning the new ferry arrived."
  solo one "$exe" "$prompt" 24
  body="{\"prompt\": $(node "$tool" json "$prompt"), \"max_tokens\": 24, \"temperature\": 0}"
  call plain "${auth[@]}" -H "Content-Type: application/json" -d "$body" "$url/v1/completions"
  [ "$(cat "$work/plain.status")" = 200 ] || fail "completion: $(cat "$work/plain")"
  node "$tool" text <"$work/plain" >"$work/plain.text"
  same plain.text one.want
  [ "$(field plain usage.completion_tokens)" -ge 1 ] && [ "$(field plain usage.prompt_tokens)" -ge 1 ] || fail "usage: $(cat "$work/plain")"
  echo "  completion: $(field plain choices.0.finish_reason), usage $(field plain usage) == OUT --prompt"
  curl -sN "${auth[@]}" -d "${body%\}}, \"stream\": true}" "$url/v1/completions" >"$work/stream" || fail "stream"
  node "$tool" sse <"$work/stream" >"$work/stream.text" || fail "stream: not a well-formed event stream"
  same stream.text one.want
  echo "  streamed completion ($(grep -c '^data: ' "$work/stream") events) == OUT --prompt"

  # a stop string from the middle of the greedy text: the text ends before it, also when streamed
  stop_str=$(node -e 'const t=require("fs").readFileSync(process.argv[1],"utf8"); const c=[...t]; process.stdout.write(c.slice(6,9).join(""))' "$work/one.want")
  node -e 'const t=require("fs").readFileSync(process.argv[1],"utf8"); process.stdout.write(t.slice(0, t.indexOf(process.argv[2]))+"\n")' \
    "$work/one.want" "$stop_str" >"$work/stop.want"
  sbody="${body%\}}, \"stop\": [\"never seen\", $(node "$tool" json "$stop_str")]}"
  call stop "${auth[@]}" -d "$sbody" "$url/v1/completions"
  node "$tool" text <"$work/stop" >"$work/stop.text"
  same stop.text stop.want
  [ "$(field stop choices.0.finish_reason)" = stop ] || fail "stop: finish_reason $(field stop choices.0.finish_reason)"
  curl -sN "${auth[@]}" -d "${sbody%\}}, \"stream\": true}" "$url/v1/completions" >"$work/stops"
  node "$tool" sse <"$work/stops" >"$work/stops.text" || fail "stop stream"
  same stops.text stop.want
  echo "  stop string $(node "$tool" json "$stop_str"): text cut before it, plain and streamed"

  # the official openai client
  oc=$here/openai_client
  if [ ! -d "$oc/node_modules/openai" ]; then
    (cd "$oc" && npm ci --no-audit --no-fund >"$work/npm.log" 2>&1) || fail "npm ci in $oc: $(tail -3 "$work/npm.log")"
  fi
  solo oc "$exe" "$prompt" 12
  node "$oc/client.mjs" "$url" "$key" "$prompt" 12 >"$work/oc.json" || fail "openai client"
  for k in completion stream; do
    node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1]))[process.argv[2]]+"\n")' \
      "$work/oc.json" "$k" >"$work/oc.$k"
    same "oc.$k" oc.want
  done
  [ "$(field oc.json models)" = '["m.exe"]' ] && [ "$(field oc.json wrong_key)" = 401 ] || fail "openai client: $(cat "$work/oc.json")"
  if [ "$(field oc.json chat_error)" != undefined ]; then # the synthetic model has no chat template
    [ "$(field oc.json chat_error.status)" = 400 ] && [ "$(field oc.json chat_error.code)" = chat_template_missing ] ||
      fail "openai client chat: $(field oc.json chat_error)"
  else
    [ "$(field oc.json chat)" = "$(field oc.json chat_stream)" ] || fail "chat: plain and streamed differ"
  fi
  echo "  openai client: completion and stream == OUT --prompt; chat: $(field oc.json chat_error.code)"

  # errors: each status with its OpenAI-style body
  expect_error e_json 400 invalid_json "${auth[@]}" -d '{"prompt": "x",' "$url/v1/completions"
  expect_error e_field 400 invalid_value "${auth[@]}" -d '{"prompt": "x", "max_tokens": 0}' "$url/v1/completions"
  expect_error e_type 400 invalid_value "${auth[@]}" -d '{"prompt": "x", "temperature": "hot"}' "$url/v1/completions"
  expect_error e_n 400 invalid_value "${auth[@]}" -d '{"prompt": "x", "n": 2}' "$url/v1/completions"
  expect_error e_msgs 400 invalid_value "${auth[@]}" -d '{"messages": "hi"}' "$url/v1/chat/completions"
  long=$(printf 'word %.0s' $(seq 400))
  expect_error e_ctx 400 context_length_exceeded "${auth[@]}" -d "{\"prompt\": \"$long\"}" "$url/v1/completions"
  expect_error e_key 401 invalid_api_key -H "Authorization: Bearer wrong" -d '{"prompt": "x"}' "$url/v1/completions"
  expect_error e_nokey 401 invalid_api_key "$url/v1/models"
  expect_error e_404 404 not_found "${auth[@]}" "$url/v1/embeddings"
  expect_error e_405 405 method_not_allowed "${auth[@]}" "$url/v1/completions"
  curl -s -i "${auth[@]}" "$url/v1/completions" | grep -qi "^Allow: POST" || fail "405 without Allow: POST"
  head -c 100000 /dev/zero | tr '\0' 'a' >"$work/big.txt"
  expect_error e_413 413 null "${auth[@]}" --data-binary @"$work/big.txt" "$url/v1/completions"
  expect_error e_431 431 null "${auth[@]}" -H "X-Big: $(head -c 20000 "$work/big.txt")" "$url/v1/models"
  # malformed HTTP: an answer (400) and the server lives on
  printf 'GARBAGE\r\n\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; cat <&3" >"$work/raw" 2>/dev/null
  head -1 "$work/raw" | grep -q "^HTTP/1.1 400" || fail "malformed request line: '$(head -1 "$work/raw")'"
  health
  [ "$(field health status)" = ok ] || fail "/health after the errors"
  curl -s "${auth[@]}" "$url/metrics" >"$work/metrics"
  grep -q '^moe_http_requests_total{code="401"} 3$' "$work/metrics" || fail "metrics: $(grep code= "$work/metrics")"
  grep -q '^moe_expert_tokens_total{layer="1",expert="3"} [1-9]' "$work/metrics" || fail "metrics: no expert counts"
  stop

  # chat: a model compiled with a chat template (--chat-template); the reply equals
  # the completion of the rendered prompt's tokens, plain, streamed and through the openai client
  printf '%s' "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}" >"$work/tpl.jinja"
  "$moec" compile "$work/m" -o "$work/chat.exe" --batch 4 --chat-template "$work/tpl.jinja" -q || fail "compile --chat-template"
  start "$work/chat.exe" --api-key "$key"
  ids=$(printf '<|user|>%s</s><|assistant|>' "$prompt" | "$moec" tokenize "$work/m")
  call cids "${auth[@]}" -d "{\"prompt\": $ids, \"max_tokens\": 12, \"temperature\": 0}" "$url/v1/completions"
  node "$tool" text <"$work/cids" >"$work/chat.want"
  msgs="[{\"role\": \"user\", \"content\": $(node "$tool" json "$prompt")}]"
  call chat "${auth[@]}" -d "{\"messages\": $msgs, \"max_tokens\": 12, \"temperature\": 0}" "$url/v1/chat/completions"
  node "$tool" text <"$work/chat" >"$work/chat.text"
  same chat.text chat.want
  curl -sN "${auth[@]}" -d "{\"messages\": $msgs, \"max_tokens\": 12, \"temperature\": 0, \"stream\": true}" \
    "$url/v1/chat/completions" >"$work/chats"
  node "$tool" sse <"$work/chats" >"$work/chats.text" || fail "chat stream"
  same chats.text chat.want
  node "$oc/client.mjs" "$url" "$key" "$prompt" 12 >"$work/occ.json" || fail "openai client (chat)"
  for k in chat chat_stream; do
    node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1]))[process.argv[2]]+"\n")' \
      "$work/occ.json" "$k" >"$work/occ.$k"
    same "occ.$k" chat.want
  done
  stop
  echo "  chat (template): plain, streamed and openai client == the completion of the rendered prompt"
  echo "api: PASS"
fi

if [ "$part" = all ] || [ "$part" = load ]; then
  start "$exe" --metrics
  t0=$SECONDS
  for i in $(seq 32); do
    p="Request $i of the load test asks about the harbor, the ferry and the $((i * 7)) gulls."
    n=$((8 + i % 3 * 8))
    curl -sN -d "{\"prompt\": \"$p\", \"max_tokens\": $n, \"temperature\": 0, \"stream\": true}" \
      "$url/v1/completions" >"$work/load$i" &
  done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
  dt=$((SECONDS - t0))
  for i in $(seq 32); do
    p="Request $i of the load test asks about the harbor, the ferry and the $((i * 7)) gulls."
    node "$tool" sse <"$work/load$i" >"$work/load$i.text" || fail "load request $i: not a complete stream"
    solo "load$i" "$exe" "$p" $((8 + i % 3 * 8))
    same "load$i.text" "load$i.want"
  done
  [ $dt -le 60 ] || fail "32 streaming requests took $dt s"
  health
  [ "$(field health slots_busy)" = 0 ] && [ "$(field health queue)" = 0 ] || fail "/health after the load: $(cat "$work/health")"
  curl -s "$url/metrics" >"$work/metrics"
  grep -q '^moe_slots_busy 0$' "$work/metrics" && grep -q '^moe_queue_length 0$' "$work/metrics" &&
    grep -q '^moe_completions_total{result="done"} 32$' "$work/metrics" || fail "metrics after the load"
  steps=$(sed -n 's/^moe_decode_steps_total //p' "$work/metrics")
  echo "  32 streams on 8 slots in ${dt} s, $steps batched decode steps, each == its solo run; no slot left"
  stop
  echo "load: PASS"
fi

if [ "$part" = all ] || [ "$part" = slow ]; then
  "$moec" synth "$work/big" --arch mixtral --preset tiny --layers 24 --seed 2 >/dev/null 2>&1 || fail "synth big"
  sed -i 's/"max_position_embeddings":[[:space:]]*256/"max_position_embeddings": 4096/' "$work/big/config.json"
  "$moec" compile "$work/big" -o "$work/big.exe" --batch 2 --context 4096 -q || fail "compile big"
  long='{"prompt": "hi there", "max_tokens": 4000, "temperature": 0, "stream": true}'
  wait_health() { # wait_health FIELD VALUE: up to 10 s
    for _ in $(seq 100); do
      health
      [ "$(field health "$1")" = "$2" ] && return 0
      sleep 0.1
    done
    fail "/health: $1 never became $2: $(cat "$work/health")"
  }
  start "$work/big.exe" --queue 1 --metrics
  curl -sN -d "$long" "$url/v1/completions" >"$work/s1" & c1=$!
  curl -sN -d "$long" "$url/v1/completions" >"$work/s2" & c2=$!
  wait_health slots_busy 2
  curl -sN -d "$long" "$url/v1/completions" >"$work/s3" & c3=$!
  wait_health queue 1
  expect_error e_503 503 queue_full -d '{"prompt": "x"}' "$url/v1/completions"
  kill $c1 $c2 $c3; wait $c1 $c2 $c3 2>/dev/null
  t0=$(date +%s%N)
  wait_health slots_busy 0
  ms=$((($(date +%s%N) - t0) / 1000000))
  [ "$(field health queue)" = 0 ] || fail "the queued request was not dropped"
  curl -s "$url/metrics" | grep -q '^moe_completions_total{result="cancelled"} 3$' || fail "3 cancelled completions expected"
  echo "  queue full: 503; 3 clients disconnected: slots and queue free within ${ms} ms"
  # SIGTERM: the running request finishes, then exit 0
  call fin -d '{"prompt": "hi there", "max_tokens": 1500, "temperature": 0}' "$url/v1/completions" & c1=$!
  wait_health slots_busy 1
  stop
  wait $c1
  [ "$(cat "$work/fin.status")" = 200 ] && [ "$(field fin usage.completion_tokens)" = 1500 ] ||
    fail "the request running at SIGTERM: $(cat "$work/fin.status") $(head -c 300 "$work/fin")"
  echo "  SIGTERM: the running request finished (1500 tokens), exit 0"
  # a second signal cancels it
  start "$work/big.exe"
  call cut -d '{"prompt": "hi there", "max_tokens": 4000, "temperature": 0}' "$url/v1/completions" & c1=$!
  wait_health slots_busy 1
  kill -TERM "$pid"; sleep 0.2; kill -TERM "$pid"
  wait "$pid"; rc=$?; pid=
  wait $c1
  [ $rc -eq 0 ] || fail "exit status $rc after two signals"
  [ "$(cat "$work/cut.status")" = 503 ] || fail "the cancelled request: $(cat "$work/cut.status") $(cat "$work/cut")"
  echo "  two signals: the running request cancelled (503), exit 0"
  # limits: --queue 0 still serves free slots; --max-conns; --idle-timeout closes idle connections
  start "$exe" --max-conns 2 --idle-timeout 1 --queue 0
  call q0 -d '{"prompt": "x", "max_tokens": 2}' "$url/v1/completions"
  [ "$(cat "$work/q0.status")" = 200 ] || fail "--queue 0 with free slots: $(cat "$work/q0.status") $(cat "$work/q0")"
  exec 3<>"/dev/tcp/127.0.0.1/$port" 4<>"/dev/tcp/127.0.0.1/$port"
  sleep 0.3
  exec 5<>"/dev/tcp/127.0.0.1/$port"
  timeout 2 cat <&5 >"$work/busy.http"
  head -1 "$work/busy.http" | grep -q "^HTTP/1.1 503" || fail "a third connection with --max-conns 2 was not answered 503"
  n=$(sed -n 's/^Content-Length: \([0-9]*\)\r$/\1/p' "$work/busy.http") # the body is its last line
  [ -n "$n" ] && [ "$(tail -n 1 "$work/busy.http" | wc -c)" = "$n" ] || fail "the 503 for --max-conns: Content-Length $n is not its body's"
  sleep 2
  timeout 2 cat <&3 >/dev/null || fail "an idle connection was kept beyond --idle-timeout 1"
  exec 3>&- 4>&- 5>&-
  health
  [ "$(field health status)" = ok ] || fail "/health after the limits"
  stop
  echo "  limits: --queue 0, --max-conns 2 (503), --idle-timeout 1 (closed)"
  echo "slow: PASS"
fi
echo PASS
