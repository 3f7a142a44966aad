#!/usr/bin/env bash
# compare_llama.sh: moec against llama.cpp on the same GGUF file, side by side, on this machine.
#
#   examples/compare_llama.sh --llama-bin DIR --model X.gguf [--threads T] [--prompt 128,512]
#       [--gen 64] [--batch B] [--repeat R] [--quantize Q8_0,Q4_0,Q4_K] [--act exact|int8|bf16] [--moec PATH]
#       [--work DIR]
#
# DIR holds llama.cpp's binaries (its build/bin: llama-bench; llama-batched-bench for --batch,
# llama-quantize for --quantize). llama.cpp is not a dependency of moec: build it yourself, e.g.
#   cmake -S llama.cpp -B llama.cpp/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build llama.cpp/build -j --target llama-bench llama-batched-bench llama-quantize
# X.gguf is any GGUF moec runs; `moec convert MODEL -o X.gguf` makes one from a Hugging Face folder
# (it carries llama.cpp's no-vocab marker, which is all llama-bench needs: it feeds token ids).
#
# The model is compiled once with moec (and once more with --batch B), then every figure is taken
# R times, interleaved (moec, llama.cpp, moec, ...; which goes first alternates by round), each run
# a fresh process after the file it maps (the executable for moec, the GGUF for llama.cpp) has been
# dropped from the page cache and read back in, so both start from the same page-cache state:
#   pp P     prefill tok/s of a P-token prompt, each P of --prompt (default 128,512): moec's
#            `--verbose` timing line (after --warmup 1) against llama-bench -p P (warm-up run, -r 1)
#   tg G     decode tok/s of G tokens (default 64) after a 1-token prompt: moec -n G+1 against
#            llama-bench -n G (from an empty context)
#   B=B tg G with --batch B: aggregate decode tok/s of B sequences at once, each with its own prompt
#            of the first P and G new tokens: an executable compiled with --batch B
#            (--batch-prompts) against llama-batched-bench -npl B -npp P -ntg G (its S_TG column)
# With --quantize TYPES the model is also quantised by llama-quantize to each type (names as it takes
# them: Q8_0, Q4_0, Q4_K (= Q4_K_M), Q4_K_S, ...), into the work folder, and each is measured too.
# The table gives the median of the R runs of each figure and moec / llama.cpp; it names both
# versions, the CPU and the threads. --threads defaults to all cores; both engines get the same.
# --act: moec's activation mode (moec compile --act; default exact): int8 quantises activations per
# 32 values for block-quantised weights, as llama.cpp's CPU backend does; bf16 rounds them to bf16 for
# bf16 weights, as llama.cpp does for a BF16 model.
# --work DIR: where the compiled executables (removed once measured: each is as large as its model)
# and the quantised files go (default: a temporary folder, removed at exit); quantised files found
# there are reused when newer than the model.
set -euo pipefail
me=compare_llama.sh
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "$me: error: $*" >&2; exit 1; }

llama_bin="" model="" threads=$(nproc) prompts=128,512 gen=64 batch=0 repeat=3 quantize="" work="" act=exact
moec=${MOEC:-}
while [ $# -gt 0 ]; do
  case $1 in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
  [ $# -ge 2 ] || { echo "$me: $1: expected a value" >&2; usage; }
  case $1 in
    --llama-bin) llama_bin=$2 ;;
    --model) model=$2 ;;
    --threads) threads=$2 ;;
    --prompt) prompts=$2 ;;
    --gen) gen=$2 ;;
    --batch) batch=$2 ;;
    --repeat) repeat=$2 ;;
    --quantize) quantize=$2 ;;
    --moec) moec=$2 ;;
    --act) act=$2 ;;
    --work) work=$2 ;;
    *) echo "$me: $1: unknown option" >&2; usage ;;
  esac
  shift 2
done
[ -n "$llama_bin" ] && [ -n "$model" ] || usage
[ "$act" = exact ] || [ "$act" = int8 ] || [ "$act" = bf16 ] || die "--act: expected exact, int8 or bf16; got '$act'"
for v in "$threads" "$gen" "$batch" "$repeat"; do
  [[ $v =~ ^[0-9]+$ ]] || die "'$v': expected a whole number (--threads, --gen, --batch, --repeat)"
done
[[ $prompts =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--prompt '$prompts': expected token counts such as 128,512"
[ "$threads" -ge 1 ] && [ "$gen" -ge 1 ] && [ "$repeat" -ge 1 ] || die "--threads, --gen and --repeat must be at least 1"

need_bin() { # name: the path of llama.cpp's binary, or a one-line error
  [ -x "$llama_bin/$1" ] || die "$llama_bin/$1: not found or not executable; expected --llama-bin to name the folder of llama.cpp's binaries (its build/bin)"
}
need_bin llama-bench
[ "$batch" -eq 0 ] || need_bin llama-batched-bench
[ -z "$quantize" ] || need_bin llama-quantize
[ -f "$model" ] && [ -r "$model" ] || die "$model: no such readable file; expected a .gguf model (moec convert MODEL -o X.gguf makes one)"
[ "$(head -c 4 "$model")" = GGUF ] || die "$model: not a GGUF file; expected one (moec convert MODEL -o X.gguf makes one)"
if [ -z "$moec" ]; then # $MOEC, the moec on PATH, or this checkout's build/moec
  moec=$(command -v moec || true)
  [ -n "$moec" ] || moec=$(dirname "$0")/../build/moec
fi
[ -x "$moec" ] || die "$moec: moec not found; expected --moec PATH (or MOEC=PATH, or moec on PATH)"
command -v python3 >/dev/null || die "python3: not found; expected it (page cache, JSON output and the table)"

if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/compare_llama.XXXXXX")
  trap 'rm -rf "$work"' EXIT
else
  mkdir -p "$work"
fi
results=$work/results.tsv # type, measure, engine, tok/s: one line per run
: >"$results"
log=$work/last_run.log

# The same page-cache state before every run: each file dropped (after fsync) and read back in.
refresh() {
  python3 - "$@" <<'EOF'
import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
EOF
  cat "$@" >/dev/null
}

# Runs a command into $log; on failure prints its last lines and stops.
run() {
  if ! "$@" >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    die "$(basename "$1") failed (above: the last lines of its output; all of it in $log)"
  fi
}

vocab=$("$moec" inspect "$model" | sed -n 's/.*vocab \([0-9]*\).*/\1/p' | head -n 1)
[ -n "$vocab" ] || die "$model: moec inspect gave no vocabulary size"
ids() { # n [seed]: n token ids spread over the vocabulary (as moec bench picks them)
  python3 -c "import sys; n, s, v = map(int, sys.argv[1:]); print(','.join(str(1 + (i * 7919 + s * 104729) % (v - 1)) for i in range(n)))" "$1" "${2:-0}" "$vocab"
}
IFS=, read -r -a plens <<<"$prompts"
p0=${plens[0]}

moec_timing() { # field (prefill|decode): tok/s from the timing line in $log
  sed -n "s/^timing: .*| $1 [0-9]* tok in [0-9.]* s = \([0-9.]*\) tok\/s.*/\1/p" "$log" | tail -n 1
}
llama_json() { # the avg_ts of llama-bench's -o json in $log (its build commit into $work/llama_commit)
  python3 -c "
import json, sys
t = sys.stdin.read()
r = json.loads(t[t.index('['):])[0]
open(sys.argv[1], 'w').write('%s (build %s)' % (r['build_commit'], r['build_number']))
print(r['avg_ts'])" "$work/llama_commit" <"$log"
}
record() { # type measure engine value
  [ -n "$4" ] || die "$2 ($3): no figure in its output ($log)"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
  printf '  %-8s %-14s %-9s %10.1f tok/s\n' "$1" "$2" "$3" "$4" >&2
}

# One measure, both engines, in the round's order: moec_cmd and llama_cmd are functions.
pair() { # type measure round moec_fn llama_fn
  local first=$4 second=$5
  if [ $(($3 % 2)) -eq 0 ]; then first=$5 second=$4; fi
  $first "$1" "$2"
  $second "$1" "$2"
}

measure_model() { # gguf type
  local gguf=$1 type=$2 exe=$work/$2.moec exeb=$work/$2.moec-b$batch
  echo "$me: $type: compiling $gguf with moec" >&2
  run "$moec" compile "$gguf" -o "$exe" --threads "$threads" --act "$act" -q
  if [ "$batch" -gt 0 ]; then
    echo "$me: $type: compiling with --batch $batch" >&2
    run "$moec" compile "$gguf" -o "$exeb" --batch "$batch" --threads "$threads" --act "$act" -q
  fi
  local P bids="" b
  for ((b = 0; b < batch; b++)); do bids+="${bids:+;}$(ids "$p0" "$b")"; done
  local npl_ctx=$((batch * (p0 + gen + 1)))

  pp_moec() { refresh "$exe"; run "$exe" --tokens "$(ids "$P")" -n 1 --threads "$threads" --verbose --warmup 1
              record "$1" "$2" moec "$(moec_timing prefill)"; }
  pp_llama() { refresh "$gguf"; run "$llama_bin/llama-bench" -m "$gguf" -p "$P" -n 0 -t "$threads" -r 1 -o json
               record "$1" "$2" llama.cpp "$(llama_json)"; }
  tg_moec() { refresh "$exe"; run "$exe" --tokens "$(ids 1)" -n $((gen + 1)) --threads "$threads" --verbose --warmup 1
              record "$1" "$2" moec "$(moec_timing decode)"; }
  tg_llama() { refresh "$gguf"; run "$llama_bin/llama-bench" -m "$gguf" -p 0 -n "$gen" -t "$threads" -r 1 -o json
               record "$1" "$2" llama.cpp "$(llama_json)"; }
  bt_moec() { refresh "$exeb"; run "$exeb" --batch-prompts --tokens "$bids" -n $((gen + 1)) --threads "$threads" --verbose
              record "$1" "$2" moec "$(moec_timing decode)"; }
  bt_llama() { refresh "$gguf"
               run "$llama_bin/llama-batched-bench" -m "$gguf" -npl "$batch" -npp "$p0" -ntg "$gen" -c "$npl_ctx" \
                   -t "$threads" -tb "$threads" --output-format jsonl
               record "$1" "$2" llama.cpp "$(sed -n 's/.*"speed_tg": *\([0-9.]*\).*/\1/p' "$log" | tail -n 1)"; }

  local r
  for ((r = 1; r <= repeat; r++)); do
    echo "$me: $type: round $r of $repeat" >&2
    for P in "${plens[@]}"; do pair "$type" "pp $P" "$r" pp_moec pp_llama; done
    pair "$type" "tg $gen" "$r" tg_moec tg_llama
    [ "$batch" -eq 0 ] || pair "$type" "B=$batch tg $gen" "$r" bt_moec bt_llama
  done
  rm -f "$exe" "$exeb"
}

# The versions and the machine, for the table's head (llama.cpp's: the build_commit its llama-bench reports).
moec_commit=$(git -C "$(dirname "$(realpath "$moec")")" describe --always --dirty 2>/dev/null || echo "version unknown")
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)

# the base model's label: the type of its expert matrices (the bulk of an MoE model's bytes)
base=$("$moec" inspect "$model" | sed -n 's/^[a-z ]*blk\.N\.ffn_up_exps\.weight *\([A-Za-z0-9_]*\).*/\1/p' | head -n 1)
models=("$model") labels=("${base:-model}")
IFS=, read -r -a qtypes <<<"$quantize"
for q in "${qtypes[@]}"; do
  out=$work/$(basename "$model" .gguf)-$q.gguf
  if [ ! "$out" -nt "$model" ]; then
    echo "$me: quantising $model to $q with llama-quantize" >&2
    run "$llama_bin/llama-quantize" "$model" "$out.part" "$q" "$threads"
    mv "$out.part" "$out"
  fi
  models+=("$out") labels+=("$q")
done
load=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(awk -v l="${load%% *}" -v n="$(nproc)" 'BEGIN { print (l > n / 2) ? "yes" : "" }')
[ -z "$busy" ] || echo "$me: warning: load average $load on $(nproc) cores: other work will skew the figures" >&2
for i in "${!models[@]}"; do measure_model "${models[$i]}" "${labels[$i]}"; done

export CL_MODEL CL_MOEC CL_LLAMA CL_CPU CL_THREADS CL_LOAD CL_REPEAT
CL_MODEL=$(realpath "$model") CL_MOEC="moec $moec_commit ($moec, --act $act)" CL_CPU="$cpu, $(nproc) cores" CL_THREADS=$threads
CL_LLAMA="llama.cpp $(cat "$work/llama_commit") ($llama_bin)" CL_LOAD="$load${busy:+ (busy: the figures are skewed)}"
CL_REPEAT=$repeat
python3 - "$results" <<'EOF'
import os, statistics, sys
env = os.environ
rows = {}
for line in open(sys.argv[1]):
    t, m, e, v = line.rstrip('\n').split('\t')
    rows.setdefault((t, m), {}).setdefault(e, []).append(float(v))
print('moec vs llama.cpp on %s' % env['CL_MODEL'])
print('  %s; %s' % (env['CL_MOEC'], env['CL_LLAMA']))
print('  %s; %s threads for both; load average at start %s' % (env['CL_CPU'], env['CL_THREADS'], env['CL_LOAD']))
print('  tok/s, median of %s interleaved runs, each a fresh process after its file was re-read' % env['CL_REPEAT'])
print('%-8s %-16s %10s %10s %11s' % ('type', 'measure', 'moec', 'llama.cpp', 'moec/llama'))
for (t, m), e in rows.items():
    a, b = statistics.median(e['moec']), statistics.median(e['llama.cpp'])
    print('%-8s %-16s %10.1f %10.1f %10.2fx' % (t, m, a, b, a / b))
EOF
