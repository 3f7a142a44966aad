/* moec compile: flags -> CompileOptions -> compile_model(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/codegen.h"
#include "cli.h"
#include "commands.h"
#include "driver.h"
#include "format.h"
#include "quantize.h"

static const char compile_usage[] =
    "usage: moec compile MODEL_DIR -o OUT [options]\n"
    "Compiles a Hugging Face MoE checkpoint into one executable specialised for a batch size,\n"
    "context length, prefill chunk, expert capacity and target CPU. OUT runs like 'moec run'\n"
    "(OUT --tokens 1,2,3 -n 16 ...; see OUT --help).\n"
    "\n"
    "  -o OUT                  output path (required)\n"
    "  --batch B               sequence slots decoded together, one token each per decode step\n"
    "                          (default 1, at most 1024); the KV cache holds B x context positions\n"
    "  --context S             KV-cache positions (default min(max_position_embeddings, 4096))\n"
    "  --prefill-chunk P       prompt tokens per prefill step (default: 128 to 512, so that each\n"
    "                          expert gets about 128 tokens of a full chunk; at most S)\n"
    "  --capacity-factor F     expert capacity C = ceil(F*T*k/E) per step, clamped to [1, T];\n"
    "                          assignments beyond C are dropped (default 0: dropless, exact)\n"
    "  --target TRIPLE         target triple (default: this machine), e.g. aarch64-linux-gnu\n"
    "  --cpu NAME|native       target CPU (default native for the host, generic otherwise)\n"
    "  --features +a,-b        extra target features (e.g. -amx-bf16: prefill on AVX-512 FMA, not AMX tiles)\n"
    "  --amx-planes 3|2|1      with AMX tiles, bf16 planes per f32 activation: 3 exact (default); 2 keeps\n"
    "                          16 bits (logits move ~1e-5, prefill ~20% faster); 1 rounds activations to bf16\n"
    "  --quant SPEC            block-quantise the weights at load, as 'moec run --quant' (TYPE[,CLASS=TYPE...],\n"
    "                          e.g. q4_k,attn=q8_0; see 'moec inspect --quant SPEC')\n"
    "  --act exact|int8|bf16   how the activations meet the weights: exact (default; f32 activations\n"
    "                          times the exactly dequantised weights); int8 (block-quantised weights:\n"
    "                          activations quantised per 32 values, integer dot products, as llama.cpp);\n"
    "                          bf16 (bf16 weights: activations rounded to bf16, vdpbf16ps or one AMX\n"
    "                          plane; logits move ~0.02, prefill ~1.6x faster where AVX512_BF16 is)\n"
    "  --threads N             most threads a step will run (sizes per-thread buffers; default: cores)\n"
    "  --weights embed|sidecar weights inside OUT (default) or beside it in OUT.moew\n"
    "  --emit exe|obj|llvm|asm what to write (default exe; obj/llvm/asm write only the program; obj with\n"
    "                          --weights sidecar also OUT.moew, to link OUT into a program of your own\n"
    "                          with libmoert: see examples/)\n"
    "  --dump-after PASS       print the IR after build, specialize, fuse, pack or plan, and stop\n"
    "  --chat-template FILE    the chat template to embed (Jinja; default: the model's own, from\n"
    "                          tokenizer_config.json, chat_template.jinja or the GGUF file); refused\n"
    "                          at compile time if it uses what the runtime's Jinja subset lacks\n"
    "  --no-chat-template      embed none (the compiled model's server then refuses chat requests)\n"
    "  -q, --quiet             no progress or timing lines\n";

int cmd_compile(int argc, char **argv) {
    Diag d = {0};
    CompileOptions o = {.batch = 1};
    QuantSpec spec;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool takes = strcmp(a, "-q") && strcmp(a, "--quiet") && strcmp(a, "-h") && strcmp(a, "--help") &&
                     strcmp(a, "--no-chat-template") && a[0] == '-';
        if (takes && !(v = cli_value(&d, argc, argv, &i))) return 2;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(compile_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = true;
        } else if (!strcmp(a, "-o")) {
            o.out = v;
        } else if (!strcmp(a, "--batch")) {
            if (!cli_parse_int(&d, a, v, 1, MOE_MAX_BATCH, &o.batch)) return 2;
        } else if (!strcmp(a, "--context")) {
            if (!cli_parse_int(&d, a, v, 1, 1 << 22, &o.context)) return 2;
        } else if (!strcmp(a, "--prefill-chunk")) {
            if (!cli_parse_int(&d, a, v, 1, 1 << 16, &o.prefill_chunk)) return 2;
        } else if (!strcmp(a, "--capacity-factor")) {
            if (!cli_parse_double(&d, a, v, 0, 1e6, &o.capacity_factor)) return 2;
        } else if (!strcmp(a, "--target")) {
            o.triple = v;
        } else if (!strcmp(a, "--cpu")) {
            o.cpu = v;
        } else if (!strcmp(a, "--features")) {
            o.features = v;
        } else if (!strcmp(a, "--amx-planes")) {
            int64_t np;
            if (!cli_parse_int(&d, a, v, 1, 3, &np)) return 2;
            o.amx_planes = (int)np;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_int(&d, a, v, 1, 1024, &o.threads)) return 2;
        } else if (!strcmp(a, "--act")) {
            if (!cli_parse_act(&d, a, v, &o.act)) return 2;
        } else if (!strcmp(a, "--weights")) {
            if (strcmp(v, "embed") && strcmp(v, "sidecar")) {
                diag_error(&d, "--weights: expected embed or sidecar; got '%s'", v);
                return 2;
            }
            o.sidecar = !strcmp(v, "sidecar");
        } else if (!strcmp(a, "--emit")) {
            if (!strcmp(v, "exe")) o.emit = EMIT_EXE;
            else if (!strcmp(v, "obj")) o.emit = EMIT_OBJ;
            else if (!strcmp(v, "llvm")) o.emit = EMIT_LLVM;
            else if (!strcmp(v, "asm")) o.emit = EMIT_ASM;
            else {
                diag_error(&d, "--emit: expected exe, obj, llvm or asm; got '%s'", v);
                return 2;
            }
        } else if (!strcmp(a, "--quant")) {
            if (!quantize_spec_parse(&d, v, &spec)) return 2;
            o.quant = &spec;
        } else if (!strcmp(a, "--dump-after")) {
            o.dump_after = v;
        } else if (!strcmp(a, "--chat-template")) {
            o.chat_template = v;
        } else if (!strcmp(a, "--no-chat-template")) {
            o.no_chat_template = true;
        } else if (a[0] == '-') {
            diag_error(&d, "%s: unknown option; see 'moec compile --help'", a);
            return 2;
        } else if (!o.model_dir) {
            o.model_dir = a;
        } else {
            diag_error(&d, "%s: unexpected argument; expected one MODEL_DIR", a);
            return 2;
        }
    }
    if (!o.model_dir || (!o.out && !o.dump_after)) {
        diag_error(&d, "compile: expected MODEL_DIR and -o OUT; see 'moec compile --help'");
        return 2;
    }
    if (o.chat_template && o.no_chat_template) {
        diag_error(&d, "--chat-template and --no-chat-template: give one or the other");
        return 2;
    }
    int rc = compile_model(&o, &d);
    diag_summary(&d);
    return rc;
}
