/* test_chat_template: where `moec compile` finds a model's chat template (frontend/chat_template.c):
 * tokenizer_config.json (a string, the list form's "default", null), chat_template.jinja beside it
 * (which wins), a GGUF file's tokenizer.chat_template, --chat-template FILE (which wins over all),
 * none at all; and the one-line errors: unsupported constructs by name and line, an unreadable
 * file, a list without "default", a key of the wrong type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arena.h"
#include "chat_template.h"
#include "diag.h"
#include "gguf.h"
#include "test.h"

static const char *tmp;

static const char *path(const char *name) {
    static char buf[8][1024];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, 1024, "%s/%s", tmp, name);
    return p;
}

static void write_text(const char *file, const char *text) {
    FILE *f = fopen(file, "wb");
    EXPECT_TRUE(f && fputs(text, f) >= 0);
    if (f) fclose(f);
}

/* chat_template_load on model (override when not NULL) must give want (NULL: no template), or fail
 * with exactly want_err (after "moec: error: ") when want_err is not NULL. */
static void check(int line, const char *model, const char *override, const char *want, const char *want_err) {
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    const char *text = (const char *)1;
    size_t len = 99;
    bool ok = chat_template_load(a, &d, model, override, &text, &len);
    if (want_err) {
        test_check(!ok && d.n_errors == 1 && !strcmp(d.first, want_err), __FILE__, line, "error", want_err, d.first);
    } else {
        test_check(ok, __FILE__, line, "loads", "ok", d.first);
        if (ok && want) test_check(text && len == strlen(want) && !strcmp(text, want), __FILE__, line, "text", want, text ? text : "(none)");
        if (ok && !want) test_check(!text && !len, __FILE__, line, "no template", "(none)", text ? text : "(none)");
    }
    arena_destroy(a);
}
#define CHECK(model, override, want) check(__LINE__, model, override, want, NULL)
#define CHECK_ERR(model, override, err) check(__LINE__, model, override, NULL, err)

int main(void) {
    tmp = test_tmpdir("chat_template");
    if (!tmp) test_skip("cannot create a temporary folder");
    const char *dir = path("hf");
    mkdir(dir, 0755);
    char cfg[1100], jinja[1100];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    snprintf(jinja, sizeof jinja, "%s/chat_template.jinja", dir);

    CHECK(dir, NULL, NULL); /* no tokenizer_config.json */
    write_text(cfg, "{\"bos_token\": \"<s>\"}");
    CHECK(dir, NULL, NULL);
    write_text(cfg, "{\"chat_template\": null}");
    CHECK(dir, NULL, NULL);
    write_text(cfg, "{\"chat_template\": \"{% for m in messages %}{{ m.content }}\\n{% endfor %}\"}");
    CHECK(dir, NULL, "{% for m in messages %}{{ m.content }}\n{% endfor %}");
    write_text(cfg, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    CHECK(dir, NULL, "D");
    write_text(cfg, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    char want[2048];
    snprintf(want, sizeof want, "%s: key 'chat_template': a list without a template named 'default'; give one with "
             "--chat-template FILE", cfg);
    CHECK_ERR(dir, NULL, want);
    write_text(cfg, "{\"chat_template\": 3}");
    snprintf(want, sizeof want, "%s: key 'chat_template': expected a string or a list of named templates", cfg);
    CHECK_ERR(dir, NULL, want);
    write_text(cfg, "{\"chat_template\": \"a\\n{{ x|wordcount }}\"}");
    snprintf(want, sizeof want, "%s: chat template: line 2: filter 'wordcount' is not supported", cfg);
    CHECK_ERR(dir, NULL, want);
    /* chat_template.jinja wins over tokenizer_config.json */
    write_text(jinja, "{{ bos_token }}J");
    CHECK(dir, NULL, "{{ bos_token }}J");
    /* --chat-template FILE wins over both */
    const char *over = path("over.jinja"), *bad = path("bad.jinja");
    write_text(over, "{{ eos_token }}O");
    CHECK(dir, over, "{{ eos_token }}O");
    write_text(bad, "{% if x %}\n{% macro m() %}{% endmacro %}{% endif %}");
    snprintf(want, sizeof want, "%s: chat template: line 2: tag 'macro' is not supported", bad);
    CHECK_ERR(dir, bad, want);
    snprintf(want, sizeof want, "%s: cannot read the chat template: No such file or directory", path("missing.jinja"));
    CHECK_ERR(dir, path("missing.jinja"), want);

    /* a GGUF model: its tokenizer.chat_template */
    const char *gguf = path("m.gguf");
    Diag d = {0};
    GgufKv kv[] = {gguf_kv_str("general.architecture", "qwen3moe"), gguf_kv_str("tokenizer.chat_template", "G{{ 1 }}")};
    EXPECT_TRUE(gguf_write_file(&d, gguf, kv, 2, NULL, 0, 32));
    CHECK(gguf, NULL, "G{{ 1 }}");
    CHECK(gguf, over, "{{ eos_token }}O");
    kv[1] = gguf_kv_u32("tokenizer.chat_template", 3);
    EXPECT_TRUE(gguf_write_file(&d, gguf, kv, 2, NULL, 0, 32));
    snprintf(want, sizeof want, "%s: key 'tokenizer.chat_template': expected a string; got uint32", gguf);
    CHECK_ERR(gguf, NULL, want);
    EXPECT_TRUE(gguf_write_file(&d, gguf, kv, 1, NULL, 0, 32));
    CHECK(gguf, NULL, NULL);
    return test_done();
}
