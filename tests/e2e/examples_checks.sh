#!/usr/bin/env bash
# examples_checks.sh MOEC SRC BUILD WORK CHECK: the programs in examples/, built and run as their
# headers say, against what the compiled executable prints for the same model.
#   c_api     generate.c and slots.c linked with a model object (--emit obj --weights sidecar) and
#             the build tree's libmoert.a: generate's text == `OUT --prompt`; slots' results ==
#             `OUT --batch-prompts` (B = 4, 6 prompts) == each prompt alone
#   serve_remote  examples/serve_remote.sh's dry run (host local:DIR): the model compiled, copied
#             and served; a completion through curl == the executable's text
#   compare_llama  examples/compare_llama.sh against stand-ins for llama.cpp's binaries (llama.cpp
#             is not a dependency): its one-line errors; then the tiny model converted to GGUF,
#             --quantize, --batch, two rounds: the table has every row, moec's figures parsed
#   install   `cmake --install` into a prefix: generate.c built with `pkg-config --cflags --libs
#             moert` against the installed libmoert.so gives the same text; the installed moec
#             compiles an executable with the installed runtime
set -u
moec=$1 src=$2 build=$3 work=$4 check=$5
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
cc=${CC:-cc}
xflags=${EXAMPLE_CFLAGS:-} # the sanitizer flags when the runtime was built with them
"$moec" synth "$work/m" --arch mixtral --preset tiny --seed 1 >/dev/null 2>&1 || fail "synth"
"$moec" compile "$work/m" -o "$work/model.o" --emit obj --weights sidecar --batch 4 --threads 2 -q || fail "compile obj"
[ -s "$work/model.o.moew" ] || fail "--emit obj --weights sidecar wrote no model.o.moew"
"$moec" compile "$work/m" -o "$work/exe" --batch 4 --threads 2 -q || fail "compile exe"
prompt="The quick brown fox"
want=$("$work/exe" --prompt "$prompt" -n 12 --threads 2) || fail "exe --prompt"
case $check in
c_api)
  for ex in generate slots; do
    $cc -O2 -std=c11 -Wall -Werror $xflags -o "$work/$ex" "$src/examples/$ex.c" "$work/model.o" -I"$src/runtime/include" \
      "$build/runtime/libmoert.a" -fopenmp -lm || fail "build $ex"
  done
  got=$(OMP_NUM_THREADS=2 "$work/generate" "$work/model.o.moew" "$prompt" 12) || fail "run generate"
  echo "exe:      $want"; echo "generate: $got"
  [ -n "$want" ] && [ "$want" = "$got" ] || fail "generate's text differs from the executable's"
  ps=("Hello" "Once upon a time there was" "1 2 3 4 5 6 7" "a" "The weather today is" "Why")
  printf '%s\n' "${ps[@]}" >"$work/prompts"
  OMP_NUM_THREADS=2 "$work/slots" "$work/model.o.moew" 10 "${ps[@]}" >"$work/slots.out" || fail "run slots"
  "$work/exe" --batch-prompts --prompt-file "$work/prompts" -n 10 --threads 2 >"$work/batch.out" || fail "exe batch"
  for i in "${!ps[@]}"; do echo "[$((i + 1))] $("$work/exe" --prompt "${ps[$i]}" -n 10 --threads 2)"; done >"$work/alone.out"
  cat "$work/slots.out"
  cmp -s "$work/slots.out" "$work/batch.out" || { diff "$work/slots.out" "$work/batch.out"; fail "slots != --batch-prompts"; }
  cmp -s "$work/slots.out" "$work/alone.out" || { diff "$work/slots.out" "$work/alone.out"; fail "slots != alone"; } ;;
install)
  cmake --install "$build" --prefix "$work/prefix" >/dev/null || fail "cmake --install"
  for f in bin/moec include/moe.h lib/libmoert.a lib/libmoert.so lib/moec/libmoert.a lib/moec/libmoert_main.a \
           lib/pkgconfig/moert.pc; do
    [ -e "$work/prefix/$f" ] || fail "not installed: $f"
  done
  flags=$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs moert) || fail "pkg-config moert"
  echo "pkg-config: $flags"
  $cc -O2 -std=c11 $xflags -o "$work/generate" "$src/examples/generate.c" "$work/model.o" $flags || fail "build against the install"
  lib=$(ldd "$work/generate" | awk '/libmoert.so/ {print $3}')
  [ -n "$lib" ] && [ "$(realpath "$lib")" = "$(realpath "$work/prefix/lib/libmoert.so")" ] ||
    { ldd "$work/generate"; fail "not linked to the installed libmoert.so"; }
  got=$(OMP_NUM_THREADS=2 "$work/generate" "$work/model.o.moew" "$prompt" 12) || fail "run generate"
  [ "$want" = "$got" ] || fail "installed: generate's text differs: '$got'"
  # the installed compiler finds the installed runtime (lib/moec), not the build tree's
  cp -r "$work/prefix" "$work/moved" && rm -rf "$work/prefix"
  "$work/moved/bin/moec" compile "$work/m" -o "$work/exe2" --batch 4 --threads 2 -q || fail "installed moec compile"
  got=$("$work/exe2" --prompt "$prompt" -n 12 --threads 2) || fail "exe2"
  [ "$want" = "$got" ] || fail "installed moec: text differs" ;;
serve_remote)
  # the script's dry run: compiled, "copied" into a folder, served on loopback; a completion there
  # (greedy) is the executable's own text for the prompt
  command -v curl >/dev/null && command -v node >/dev/null || { echo "SKIP: no curl or node"; exit 77; }
  port=$(node -e 'const s=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})')
  MOEC="$moec" "$src/examples/serve_remote.sh" "$work/m" "local:$work/remote" --port "$port" --batch 2 \
      >"$work/sr.out" 2>&1 || { cat "$work/sr.out"; fail "serve_remote.sh"; }
  cat "$work/sr.out"
  spid=$(pgrep -f "m.serve serve --host 127.0.0.1 --port $port" | head -1)
  [ -n "$spid" ] || fail "no server process"
  body=$(curl -sf "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
         -d "{\"prompt\": \"$prompt\", \"max_tokens\": 12, \"temperature\": 0}") || { kill "$spid"; fail "completion"; }
  kill "$spid"
  got=$(node -e 'console.log(JSON.parse(process.argv[1]).choices[0].text)' "$body")
  echo "exe:    $want"; echo "served: $got"
  [ "$want" = "$got" ] || fail "the served text differs from the executable's" ;;
compare_llama)
  cl=$src/examples/compare_llama.sh
  bash -n "$cl" || fail "compare_llama.sh: syntax"
  "$moec" convert "$work/m" -o "$work/m.gguf" 2>/dev/null || fail "convert"
  expect_err() { # message-regex args...: exit status 1 and the one-line error
    local re=$1; shift
    "$cl" "$@" >"$work/err" 2>&1 && fail "compare_llama.sh $*: succeeded"
    grep -Eq "$re" "$work/err" || { cat "$work/err"; fail "compare_llama.sh $*: expected /$re/"; }
  }
  expect_err 'nope/llama-bench: not found or not executable' --llama-bin "$work/nope" --model "$work/m.gguf" --moec "$moec"
  mkdir -p "$work/bin"
  # stand-ins: llama-bench's -o json, llama-batched-bench's jsonl, llama-quantize's copy
  printf '#!/bin/sh\necho "[{\\"build_commit\\": \\"stub\\", \\"build_number\\": 1, \\"avg_ts\\": 100.0}]"\n' >"$work/bin/llama-bench"
  chmod +x "$work/bin/llama-bench"
  expect_err 'bin/llama-batched-bench: not found' --llama-bin "$work/bin" --model "$work/m.gguf" --batch 2 --moec "$moec"
  expect_err 'config.json: not a GGUF file' --llama-bin "$work/bin" --model "$work/m/config.json" --moec "$moec"
  expect_err 'moec-nope: moec not found' --llama-bin "$work/bin" --model "$work/m.gguf" --moec "$work/moec-nope"
  printf '#!/bin/sh\necho "{\\"pl\\": 2, \\"speed_tg\\": 50.000000, \\"t\\": 1.0}"\n' >"$work/bin/llama-batched-bench"
  printf '#!/bin/sh\ncp "$1" "$2"\n' >"$work/bin/llama-quantize"
  chmod +x "$work/bin"/*
  "$cl" --llama-bin "$work/bin" --model "$work/m.gguf" --moec "$moec" --threads 2 --prompt 8,16 --gen 4 --batch 2 \
      --repeat 2 --quantize Q8_0 --work "$work/cl" >"$work/cl.out" 2>"$work/cl.err" || { cat "$work/cl.err"; fail "compare_llama.sh"; }
  cat "$work/cl.out"
  for row in "pp 8" "pp 16" "tg 4" "B=2 tg 4"; do
    for t in bf16 Q8_0; do
      grep -Eq "^$t +$row +[0-9]+\.[0-9] +(100\.0|50\.0) +[0-9]+\.[0-9]+x$" "$work/cl.out" || fail "no row '$t $row'"
    done
  done
  grep -q "llama.cpp stub (build 1)" "$work/cl.out" || fail "the llama.cpp commit is not named"
  [ "$(grep -c . "$work/cl/results.tsv")" -eq 32 ] || fail "expected 32 runs (2 types, 4 measures, 2 engines, 2 rounds)" ;;
*) fail "unknown check $check" ;;
esac
echo "$check ok"
