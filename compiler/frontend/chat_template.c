#include "chat_template.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_model.h"
#include "jinja.h"
#include "textio.h"

/* Reads path into the arena; false after diag_error. */
static bool read_file(Arena *a, Diag *d, const char *path, const char **text, size_t *len) {
    size_t n;
    char *s = moe_read_text(path, &n);
    if (!s) {
        diag_error(d, "%s: cannot read the chat template: %s", path, strerror(errno ? errno : EIO));
        return false;
    }
    *text = arena_strndup(a, s, n);
    *len = n;
    free(s);
    return true;
}

/* tokenizer_config.json's "chat_template": absent or null (none), a string, or a list of named
 * templates (the one named "default"). */
static bool from_tokenizer_config(Arena *a, Diag *d, const char *path, const char **text, size_t *len) {
    size_t n;
    char *s = moe_read_text(path, &n);
    if (!s) return true; /* no tokenizer_config.json: no template */
    cJSON *root = cJSON_ParseWithLength(s, n);
    free(s);
    bool ok = true;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (!cJSON_IsObject(root)) {
        diag_error(d, "%s: not a valid JSON object", path);
        ok = false;
    } else if (cJSON_IsArray(t)) {
        const cJSON *it, *found = NULL;
        cJSON_ArrayForEach(it, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default"))
                found = cJSON_GetObjectItemCaseSensitive(it, "template");
        }
        if (!cJSON_IsString(found)) {
            diag_error(d, "%s: key 'chat_template': a list without a template named 'default'; give one with "
                          "--chat-template FILE", path);
            ok = false;
        } else {
            t = found;
        }
    } else if (t && !cJSON_IsString(t) && !cJSON_IsNull(t)) {
        diag_error(d, "%s: key 'chat_template': expected a string or a list of named templates", path);
        ok = false;
    }
    if (ok && cJSON_IsString(t)) {
        *text = arena_strdup(a, t->valuestring);
        *len = strlen(*text);
    }
    cJSON_Delete(root);
    return ok;
}

bool chat_template_load(Arena *a, Diag *d, const char *model_path, const char *override, const char **text,
                        size_t *len) {
    *text = NULL;
    *len = 0;
    const char *source = override;
    int errors = d->n_errors;
    if (override) {
        if (!read_file(a, d, override, text, len)) return false;
    } else if ((source = gguf_model_path(a, d, model_path))) {
        GgufFile g = {0};
        bool ok = gguf_open(&g, a, d, source);
        const GgufKv *kv = ok ? gguf_kv_find(&g, "tokenizer.chat_template") : NULL;
        if (kv && kv->type != GGUF_STR) {
            diag_error(d, "%s: key 'tokenizer.chat_template': expected a string; got %s", source,
                       gguf_type_name(kv->type));
            ok = false;
        } else if (kv) {
            *text = arena_strndup(a, kv->v.s.s, kv->v.s.len);
            *len = kv->v.s.len;
        }
        gguf_close(&g);
        if (!ok) return false;
    } else if (d->n_errors > errors) {
        return false;
    } else {
        source = arena_printf(a, "%s/chat_template.jinja", model_path);
        if (access(source, R_OK) == 0) {
            if (!read_file(a, d, source, text, len)) return false;
        } else {
            source = arena_printf(a, "%s/tokenizer_config.json", model_path);
            if (!from_tokenizer_config(a, d, source, text, len)) return false;
        }
    }
    if (!*text) return true;
    if (strlen(*text) != *len) {
        diag_error(d, "%s: chat template: contains a NUL byte", source);
        return false;
    }
    char err[256];
    MoeJinja *t = moe_jinja_parse(*text, err, sizeof err);
    if (!t) {
        diag_error(d, "%s: %s", source, err);
        return false;
    }
    moe_jinja_free(t);
    return true;
}
