/* tok_cli.c: moec tokenize / detokenize / tokbench (see tok_cli.h). */
#include "tok_cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cli.h"
#include "diag.h"
#include "gguf_tok.h"
#include "outfile.h"
#include "textio.h"
#include "tokenizer.h"
#include "tokjson.h"

static const char tokenize_usage[] =
    "usage: moec tokenize PATH [--add-special] [--jsonl]\n"
    "Encodes stdin with the tokenizer at PATH (a tokenizer.json, a model folder holding one, or a\n"
    "GGUF model: its tokenizer.ggml.* metadata).\n"
    "  (default)       the whole of stdin is one text; prints one JSON array of ids\n"
    "  --jsonl         each input line is a JSON object with a \"text\" string; prints one JSON\n"
    "                  array of ids per line (blank lines are skipped)\n"
    "  --add-special   add the post-processor's special tokens (e.g. <s> for Mistral)\n";

static const char detokenize_usage[] =
    "usage: moec detokenize PATH [--skip-special]\n"
    "Decodes with the tokenizer at PATH (a tokenizer.json, a model folder holding one, or a GGUF\n"
    "model): each\n"
    "stdin line is a JSON array of ids; prints each text as a JSON string, one per line\n"
    "(blank lines are skipped).\n"
    "  --skip-special  drop special tokens (<s>, <|im_end|>, ...) from the output\n";

static const char tokbench_usage[] =
    "usage: moec tokbench PATH [--file F] [--repeat N]\n"
    "Measures encoding speed on one thread with the tokenizer at PATH (a tokenizer.json, a\n"
    "model folder holding one, or a GGUF model): encodes F (default: a built-in ~5 KB English paragraph) N times\n"
    "(default 1000) and prints tokens per second.\n";

static bool wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    return false;
}

static MoeTokenizer *tok_open(Diag *d, const char *path) {
    Arena *a = arena_new();
    void *blob = NULL;
    size_t len = 0;
    MoeTokenizer *t = NULL;
    bool is_gguf;
    if (gguf_tokenizer_load(a, d, path, &is_gguf, &blob, &len) && (is_gguf || tokjson_load(a, d, path, &blob, &len))) {
        char err[256];
        t = moe_tok_load(blob, len, err, sizeof err);
        if (!t) diag_error(d, "%s: %s", path, err);
    }
    arena_destroy(a);
    return t;
}

static void print_ids(const int32_t *ids, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%" PRId32 : "%" PRId32, ids[i]);
    fputs("]\n", stdout);
}

static void print_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (c < 0x20 || c == 0x7F)
                printf("\\u%04x", c);
            else
                putchar(c);
        }
    }
    fputs("\"\n", stdout);
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r') return false;
    return true;
}

/* Parses flags after PATH; unknown ones are a usage error. */
static int parse_flags(int argc, char **argv, const char *usage, const char *const *names, bool *values, int n_names,
                       const char **path) {
    *path = NULL;
    for (int i = 1; i < argc; i++) {
        int k = 0;
        while (k < n_names && strcmp(argv[i], names[k])) k++;
        if (k < n_names) {
            values[k] = true;
        } else if (argv[i][0] != '-' && !*path) {
            *path = argv[i];
        } else {
            fprintf(stderr, "moec: error: %s: unexpected argument '%s'\n", argv[0], argv[i]);
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!*path) {
        fputs(usage, stderr);
        return 2;
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(tokenize_usage, stdout);
        return 0;
    }
    static const char *const names[] = {"--add-special", "--jsonl"};
    bool flags[2] = {false, false};
    const char *path;
    int rc = parse_flags(argc, argv, tokenize_usage, names, flags, 2, &path);
    if (rc) return rc;
    Diag d = {0};
    MoeTokenizer *t = tok_open(&d, path);
    if (!t) return 1;
    size_t len;
    char *in = moe_read_text("-", &len);
    if (!in) {
        diag_error(&d, "stdin: read error");
        moe_tok_free(t);
        return 1;
    }
    if (!flags[1]) {
        int32_t *ids;
        size_t n;
        if (moe_tok_encode(t, in, len, flags[0], &ids, &n) != MOE_TOK_OK) {
            diag_error(&d, "stdin: out of memory encoding %zu bytes", len);
        } else {
            print_ids(ids, n);
            free(ids);
        }
    } else {
        size_t line_no = 0;
        for (char *line = in, *next; line && !diag_failed(&d); line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            line_no++;
            if (blank(line)) continue;
            cJSON *j = cJSON_Parse(line);
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
            int32_t *ids;
            size_t n;
            if (!cJSON_IsString(text)) {
                diag_error(&d, "stdin: line %zu: expected a JSON object with a \"text\" string", line_no);
            } else if (moe_tok_encode(t, text->valuestring, strlen(text->valuestring), flags[0], &ids, &n) !=
                       MOE_TOK_OK) {
                diag_error(&d, "stdin: line %zu: out of memory", line_no);
            } else {
                print_ids(ids, n);
                free(ids);
            }
            cJSON_Delete(j);
        }
    }
    free(in);
    moe_tok_free(t);
    return diag_failed(&d) ? 1 : 0;
}

int cmd_detokenize(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(detokenize_usage, stdout);
        return 0;
    }
    static const char *const names[] = {"--skip-special"};
    bool skip = false;
    const char *path;
    int rc = parse_flags(argc, argv, detokenize_usage, names, &skip, 1, &path);
    if (rc) return rc;
    Diag d = {0};
    MoeTokenizer *t = tok_open(&d, path);
    if (!t) return 1;
    size_t len, line_no = 0;
    char *in = moe_read_text("-", &len);
    if (!in) diag_error(&d, "stdin: read error");
    int32_t vocab = moe_tok_vocab_size(t);
    for (char *line = in, *next; line && !diag_failed(&d); line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        if (blank(line)) continue;
        cJSON *j = cJSON_Parse(line), *it;
        if (!cJSON_IsArray(j)) {
            diag_error(&d, "stdin: line %zu: expected a JSON array of token ids", line_no);
            cJSON_Delete(j);
            break;
        }
        size_t n = 0;
        int32_t *ids = xmalloc(((size_t)cJSON_GetArraySize(j) + 1) * sizeof *ids);
        cJSON_ArrayForEach(it, j) {
            if (!cJSON_IsNumber(it) || it->valuedouble != (double)it->valueint || it->valueint < 0 ||
                it->valueint >= vocab) {
                char *s = cJSON_PrintUnformatted(it);
                diag_error(&d, "stdin: line %zu: token id %s: expected an integer in [0, %" PRId32 ")", line_no,
                           s ? s : "?", vocab);
                free(s);
                break;
            }
            ids[n++] = it->valueint;
        }
        char *out;
        size_t out_len;
        if (!diag_failed(&d)) {
            if (moe_tok_decode(t, ids, n, skip, &out, &out_len) != MOE_TOK_OK) {
                diag_error(&d, "stdin: line %zu: out of memory", line_no);
            } else {
                print_json_string(out, out_len);
                free(out);
            }
        }
        free(ids);
        cJSON_Delete(j);
    }
    free(in);
    moe_tok_free(t);
    return diag_failed(&d) ? 1 : 0;
}

int cmd_tokbench(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(tokbench_usage, stdout);
        return 0;
    }
    Diag d = {0};
    const char *path = NULL, *file = NULL;
    int64_t repeat = 1000;
    for (int i = 1; i < argc && !diag_failed(&d); i++) {
        const char *v;
        if (!strcmp(argv[i], "--file")) {
            if ((v = cli_value(&d, argc, argv, &i))) file = v;
        } else if (!strcmp(argv[i], "--repeat")) {
            if ((v = cli_value(&d, argc, argv, &i))) cli_parse_int(&d, "--repeat", v, 1, 100000000, &repeat);
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "moec: error: tokbench: unexpected argument '%s'\n", argv[i]);
            fputs(tokbench_usage, stderr);
            return 2;
        }
    }
    if (diag_failed(&d)) return 2;
    if (!path) {
        fputs(tokbench_usage, stderr);
        return 2;
    }
    double t0 = moe_now_s();
    MoeTokenizer *t = tok_open(&d, path);
    if (!t) return 1;
    double t_load = moe_now_s() - t0;
    char *text = NULL;
    size_t len;
    if (file) {
        if (!(text = moe_read_text(file, &len))) {
            diag_error(&d, "%s: cannot read: %s", file, strerror(errno));
            moe_tok_free(t);
            return 1;
        }
    } else {
        text = xmalloc(strlen(tokjson_sample_text()) + 1);
        strcpy(text, tokjson_sample_text());
        len = strlen(text);
    }
    int32_t *ids;
    size_t n = 0, total = 0;
    int rc = 0;
    /* one warm-up run, then the timed ones */
    if (moe_tok_encode(t, text, len, false, &ids, &n) != MOE_TOK_OK)
        rc = 1;
    else
        free(ids);
    double start = moe_now_s();
    for (int64_t r = 0; r < repeat && !rc; r++) {
        if (moe_tok_encode(t, text, len, false, &ids, &n) != MOE_TOK_OK)
            rc = 1;
        else
            total += n, free(ids);
    }
    double secs = moe_now_s() - start;
    if (rc) {
        diag_error(&d, "%s: out of memory while encoding", file ? file : "the sample paragraph");
    } else {
        printf("tokbench: %s: loaded in %.2f s; %zu bytes -> %zu tokens, x%" PRId64
               " in %.3f s: %.2f M tokens/s, %.1f MB/s (1 thread)\n",
               path, t_load, len, n, repeat, secs, (double)total / secs / 1e6,
               (double)len * (double)repeat / secs / 1e6);
    }
    free(text);
    moe_tok_free(t);
    return rc;
}
