#!/usr/bin/env bash
# serve_remote.sh: compile a model for another machine, copy the one executable there and serve it.
#
#   examples/serve_remote.sh MODEL user@host [--cpu NAME | --target aarch64-linux-gnu [--cpu NAME]]
#                            [--batch B] [--port P] [--moec PATH]
#
# MODEL is a Hugging Face folder or a .gguf file. The executable is compiled here for the remote CPU
# (`--cpu znver4`, `--cpu sapphirerapids`, `--target aarch64-linux-gnu --cpu neoverse-v1`, ...; the
# default is this machine's CPU), copied with scp, and started there with `OUT serve` on all
# interfaces (`--host 0.0.0.0`: put it behind your firewall, or add --api-key). It needs only libc,
# libm and libgomp on the remote machine. The script waits until /health answers through an ssh
# tunnel, prints a curl command to try it, and leaves the server running under nohup.
#
# For a dry run on this machine, give `local:DIR` as the host: the executable is copied into DIR and
# served on 127.0.0.1 instead (this is how the test suite runs the script).
set -euo pipefail
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
model=$1 host=$2; shift 2
moec=${MOEC:-moec} port=8080 batch=8 target_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --cpu|--target) target_args+=("$1" "$2"); shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --moec) moec=$2; shift 2 ;;
    *) usage ;;
  esac
done
name=$(basename "${model%/}" .gguf).serve
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "compiling $model for ${target_args[*]:-this machine} with $batch slots"
"$moec" compile "$model" -o "$work/$name" --batch "$batch" "${target_args[@]}" -q

if [[ $host == local:* ]]; then # the dry run: copy into DIR, serve on loopback
  dir=${host#local:}
  mkdir -p "$dir" && cp "$work/$name" "$dir/"
  (cd "$dir" && nohup "./$name" serve --host 127.0.0.1 --port "$port" >"$name.log" 2>&1 &)
  url=http://127.0.0.1:$port
else
  scp -q "$work/$name" "$host:"
  ssh "$host" "nohup ./$name serve --host 0.0.0.0 --port $port >$name.log 2>&1 </dev/null &"
  ssh -f -N -L "$port:127.0.0.1:$port" "$host" # a tunnel to check it from here
  url=http://127.0.0.1:$port
fi
for _ in $(seq 100); do
  curl -sf "$url/health" >/dev/null && break
  sleep 0.2
done
curl -sf "$url/health" >/dev/null || { echo "serve_remote: the server did not answer on $url/health" >&2; exit 1; }
echo "serving $name on $host port $port; try:"
echo "  curl $url/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Hello\", \"max_tokens\": 16}'"
