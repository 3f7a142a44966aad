#!/usr/bin/env bash
# chat_checks.sh MOEC WORK TEMPLATES: the chat template end to end through `moec compile`.
#   - tokenizer_config.json's chat_template is embedded: the .moew (--weights sidecar) has a
#     MOE_SECTION_CHAT_TEMPLATE (kind 3) section holding the text and a NUL; `moec verify` passes,
#     and a byte changed in the template is caught by the model hash
#   - --chat-template FILE (the real Qwen3 template) overrides it; --no-chat-template embeds none
#   - a template using what the Jinja subset lacks: exit status 1, one stderr line naming the file,
#     the line and the construct, no output written
#   - moec inspect says whether there is a template and whether it is refused
set -u
moec=$1 work=$2 templates=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
"$moec" synth "$work/m" --arch qwen3_moe --preset tiny --seed 3 >/dev/null 2>&1 || fail "synth"
printf '%s' '{"chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"}' \
  >"$work/m/tokenizer_config.json"

u32() { od -An -tu4 -j"$2" -N4 "$1" | tr -d ' '; }
u64() { od -An -tu8 -j"$2" -N8 "$1" | tr -d ' '; }
# section FILE KIND: "offset size" of the section of that kind in a .moew header, or nothing
section() {
  local n i
  n=$(u32 "$1" 12)
  for ((i = 0; i < n; i++)); do
    [ "$(u32 "$1" $((32 + 24 * i)))" = "$2" ] && echo "$(u64 "$1" $((40 + 24 * i))) $(u64 "$1" $((48 + 24 * i)))"
  done
}
# check_embedded MOEW TEXT_FILE: the chat template section holds the file's bytes and a NUL
check_embedded() {
  local sec off size
  sec=$(section "$1" 3)
  [ -n "$sec" ] || fail "$1: no chat template section"
  read -r off size <<<"$sec"
  echo "  chat template section at $off, $size bytes"
  [ "$size" -eq $(($(wc -c <"$2") + 1)) ] || fail "$1: section of $size bytes; expected the template and a NUL"
  cmp -s <(dd if="$1" bs=1 skip="$off" count=$((size - 1)) 2>/dev/null) "$2" || fail "$1: section differs from $2"
  [ "$(od -An -tu1 -j$((off + size - 1)) -N1 "$1" | tr -d ' ')" = 0 ] || fail "$1: no NUL after the template"
}

echo "tokenizer_config.json's template"
"$moec" inspect "$work/m" | grep -x "chat         a template of 67 bytes, in the Jinja subset moec renders" ||
  fail "inspect does not show the template"
"$moec" compile "$work/m" -o "$work/a.exe" --weights sidecar -q || fail "compile"
printf '{%% for m in messages %%}<|{{ m.role }}|>{{ m.content }}\n{%% endfor %%}' >"$work/want.jinja"
check_embedded "$work/a.exe.moew" "$work/want.jinja"
"$moec" verify "$work/a.exe.moew" || fail "verify"
"$work/a.exe" --weights "$work/a.exe.moew" --tokens 1,2,3 -n 2 >/dev/null || fail "run"
read -r off size <<<"$(section "$work/a.exe.moew" 3)"
cp "$work/a.exe.moew" "$work/bad.moew"
printf 'X' | dd of="$work/bad.moew" bs=1 seek=$((off + 3)) conv=notrunc 2>/dev/null
"$moec" verify "$work/bad.moew" 2>"$work/err" && fail "a changed chat template passed verify"
cat "$work/err"; grep -q "corrupt" "$work/err" || fail "verify does not say the weights are corrupt"

echo "--chat-template FILE (embedded in the executable)"
"$moec" compile "$work/m" -o "$work/b.exe" --chat-template "$templates/qwen3_moe.jinja" -q || fail "compile"
"$moec" verify "$work/b.exe" || fail "verify"
grep -qF 'namespace(multi_step_tool=true' "$work/b.exe" || fail "the Qwen3 template is not in the executable"
"$moec" compile "$work/m" -o "$work/c.exe" --weights sidecar --chat-template "$templates/qwen3_moe.jinja" -q || fail "compile"
check_embedded "$work/c.exe.moew" "$templates/qwen3_moe.jinja"

echo "--no-chat-template"
"$moec" compile "$work/m" -o "$work/d.exe" --weights sidecar --no-chat-template -q || fail "compile"
[ -z "$(section "$work/d.exe.moew" 3)" ] || fail "a chat template section with --no-chat-template"
[ -n "$(section "$work/d.exe.moew" 2)" ] || fail "no tokenizer section"

echo "unsupported construct"
printf '{%% for m in messages %%}\n{{ m.content|wordcount }}{%% endfor %%}' >"$work/bad.jinja"
"$moec" compile "$work/m" -o "$work/e.exe" --chat-template "$work/bad.jinja" >"$work/out" 2>"$work/err"
rc=$?
cat "$work/err"
[ "$rc" -eq 1 ] || fail "exit status $rc; expected 1"
[ "$(wc -l <"$work/err")" -eq 1 ] || fail "expected exactly one line on stderr"
grep -qF "$work/bad.jinja: chat template: line 2: filter 'wordcount' is not supported" "$work/err" || fail "message"
[ ! -e "$work/e.exe" ] || fail "an output was written"
cp "$work/bad.jinja" "$work/m/chat_template.jinja"
"$moec" inspect "$work/m" | grep -F "chat         refused: $work/m/chat_template.jinja: chat template: line 2:" ||
  fail "inspect does not show the refusal"
echo PASS
