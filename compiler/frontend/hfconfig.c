#include "hfconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cfg_open(ConfigReader *r, Arena *a, Diag *d, const char *dir) {
    memset(r, 0, sizeof *r);
    r->d = d;
    r->a = a;
    r->file = arena_printf(a, "%s/config.json", dir);
    FILE *f = fopen(r->file, "rb");
    if (!f) {
        diag_error(d, "%s: cannot open: %s; expected a Hugging Face model folder with config.json", r->file,
                   strerror(errno));
        return false;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (64 << 20)) {
        fclose(f);
        diag_error(d, "%s: size %ld bytes; expected a JSON file under 64 MiB", r->file, n);
        return false;
    }
    char *text = xmalloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    fclose(f);
    text[got] = 0;
    const char *end = NULL;
    r->root = cJSON_ParseWithOpts(text, &end, true);
    if (!r->root) {
        size_t off = end ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < got; i++) line += text[i] == '\n';
        diag_error(d, "%s: malformed JSON near line %d (byte %zu)", r->file, line, off);
        free(text);
        return false;
    }
    free(text);
    if (!cJSON_IsObject(r->root)) {
        diag_error(d, "%s: top level must be a JSON object", r->file);
        cfg_close(r);
        return false;
    }
    return true;
}

void cfg_from_json(ConfigReader *r, Arena *a, Diag *d, const char *file, cJSON *root, const char *const *key_names) {
    memset(r, 0, sizeof *r);
    r->d = d;
    r->a = a;
    r->file = file;
    r->root = root;
    r->key_names = key_names;
}

const char *cfg_key(const ConfigReader *r, const char *key) {
    for (const char *const *k = r->key_names; k && k[0]; k += 2)
        if (!strcmp(k[0], key)) return k[1];
    return key;
}

void cfg_close(ConfigReader *r) {
    cJSON_Delete(r->root);
    r->root = NULL;
}

static cJSON *get(ConfigReader *r, const char *key) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

bool cfg_has(ConfigReader *r, const char *key) { return get(r, key) != NULL; }

static bool as_int(cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double x = v->valuedouble;
    if (x != floor(x) || fabs(x) > 9.0e15) return false;
    *out = (int64_t)x;
    return true;
}

int64_t cfg_int(ConfigReader *r, const char *key, int64_t def) {
    cJSON *v = get(r, key);
    if (!v) return def;
    int64_t x;
    if (!as_int(v, &x)) {
        char *s = cJSON_PrintUnformatted(v);
        diag_error(r->d, "%s: key '%s': expected an integer; got %s", r->file, cfg_key(r, key), s ? s : "?");
        cJSON_free(s);
        return def;
    }
    return x;
}

int64_t cfg_int_req(ConfigReader *r, const char *key) {
    if (!get(r, key)) {
        diag_error(r->d, "%s: key '%s': missing; expected an integer (it fixes the tensor shapes)", r->file, cfg_key(r, key));
        return 0;
    }
    return cfg_int(r, key, 0);
}

double cfg_num(ConfigReader *r, const char *key, double def) {
    cJSON *v = get(r, key);
    if (!v) return def;
    if (!cJSON_IsNumber(v)) {
        char *s = cJSON_PrintUnformatted(v);
        diag_error(r->d, "%s: key '%s': expected a number; got %s", r->file, cfg_key(r, key), s ? s : "?");
        cJSON_free(s);
        return def;
    }
    return v->valuedouble;
}

bool cfg_bool(ConfigReader *r, const char *key, bool def) {
    cJSON *v = get(r, key);
    if (!v) return def;
    if (!cJSON_IsBool(v)) {
        char *s = cJSON_PrintUnformatted(v);
        diag_error(r->d, "%s: key '%s': expected true or false; got %s", r->file, cfg_key(r, key), s ? s : "?");
        cJSON_free(s);
        return def;
    }
    return cJSON_IsTrue(v);
}

const char *cfg_str(ConfigReader *r, const char *key, const char *def) {
    cJSON *v = get(r, key);
    if (!v) return def;
    if (!cJSON_IsString(v)) {
        diag_error(r->d, "%s: key '%s': expected a string", r->file, key);
        return def;
    }
    return arena_strdup(r->a, v->valuestring);
}

int cfg_int_list(ConfigReader *r, const char *key, int64_t **out) {
    *out = NULL;
    cJSON *v = get(r, key);
    if (!v) return 0;
    if (!cJSON_IsArray(v)) {
        diag_error(r->d, "%s: key '%s': expected a list of integers", r->file, key);
        return 0;
    }
    int n = cJSON_GetArraySize(v), i = 0;
    *out = arena_alloc(r->a, sizeof(int64_t) * (size_t)(n + 1));
    cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!as_int(e, &(*out)[i])) {
            diag_error(r->d, "%s: key '%s': entry %d: expected an integer", r->file, key, i);
            return 0;
        }
        i++;
    }
    return n;
}

bool cfg_check(ConfigReader *r, bool ok, const char *key, const char *must, int64_t got) {
    if (!ok) diag_error(r->d, "%s: key '%s': must be %s; got %" PRId64, r->file, cfg_key(r, key), must, got);
    return ok;
}

static double rs_num(ConfigReader *r, cJSON *rs, const char *key, double def) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(rs, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsNumber(v)) {
        diag_error(r->d, "%s: key 'rope_scaling.%s': expected a number", r->file, key);
        return def;
    }
    return v->valuedouble;
}

void cfg_rope_scaling(ConfigReader *r, RopeScaling *rs) {
    memset(rs, 0, sizeof *rs);
    rs->type = ROPE_DEFAULT;
    rs->factor = 1.0;
    cJSON *v = get(r, "rope_scaling");
    if (!v) return;
    if (!cJSON_IsObject(v)) {
        diag_error(r->d, "%s: key 'rope_scaling': expected an object or null", r->file);
        return;
    }
    cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "rope_type");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!cJSON_IsString(t)) {
        diag_error(r->d, "%s: key 'rope_scaling': has no 'rope_type' (or 'type') string", r->file);
        return;
    }
    const char *name = t->valuestring;
    rs->factor = rs_num(r, v, "factor", 1.0);
    if (strcmp(name, "default") == 0) return;
    if (strcmp(name, "dynamic") == 0) return; /* changes nothing below max_position_embeddings, which we never pass */
    if (strcmp(name, "linear") == 0) {
        rs->type = ROPE_LINEAR;
    } else if (strcmp(name, "yarn") == 0) {
        rs->type = ROPE_YARN;
        rs->original_max_position_embeddings = rs_num(r, v, "original_max_position_embeddings", 0);
        rs->beta_fast = rs_num(r, v, "beta_fast", 0);
        rs->beta_slow = rs_num(r, v, "beta_slow", 0);
        rs->attention_factor = rs_num(r, v, "attention_factor", 0);
        rs->mscale = rs_num(r, v, "mscale", 0);
        rs->mscale_all_dim = rs_num(r, v, "mscale_all_dim", 0);
    } else {
        diag_error(r->d, "%s: key 'rope_scaling.rope_type': '%s' is not supported; expected linear, yarn, dynamic or default",
                   r->file, name);
        return;
    }
    if (!(rs->factor > 0)) diag_error(r->d, "%s: key 'rope_scaling.factor': must be > 0; got %g", r->file, rs->factor);
}

static double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

void cfg_rope_table(const ModelConfig *c, float *inv_freq, float *mscale) {
    const int64_t d = c->head_dim, half = d / 2;
    const RopeScaling *rs = &c->rope_scaling;
    *mscale = 1.0f;
    /* HF: base ** (arange(0, d, 2).float() / d) in float32, then 1 / that. */
    for (int64_t i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)d;
        float pos_freq = powf((float)c->rope_theta, expo);
        inv_freq[i] = 1.0f / pos_freq;
    }
    if (rs->type == ROPE_LINEAR) {
        for (int64_t i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / (float)rs->factor;
    } else if (rs->type == ROPE_YARN) {
        /* transformers 4.51: a stated original_max_position_embeddings replaces factor by the ratio. */
        double factor = rs->factor;
        double l0 = (double)c->max_position_embeddings;
        if (rs->original_max_position_embeddings > 0) {
            l0 = rs->original_max_position_embeddings;
            factor = (double)c->max_position_embeddings / l0;
        }
        double af = rs->attention_factor;
        if (af <= 0) {
            if (rs->mscale != 0 && rs->mscale_all_dim != 0)
                af = yarn_mscale(factor, rs->mscale) / yarn_mscale(factor, rs->mscale_all_dim);
            else
                af = yarn_mscale(factor, 1.0);
        }
        double bf = rs->beta_fast != 0 ? rs->beta_fast : 32, bs = rs->beta_slow != 0 ? rs->beta_slow : 1;
        double base = c->rope_theta;
#define CORR_DIM(rot) ((double)d * log(l0 / ((rot) * 2 * M_PI)) / (2 * log(base)))
        double lo = floor(CORR_DIM(bf)), hi = ceil(CORR_DIM(bs));
#undef CORR_DIM
        if (lo < 0) lo = 0;
        if (hi > (double)(d - 1)) hi = (double)(d - 1);
        float flo = (float)lo, fhi = (float)hi;
        if (flo == fhi) fhi += 0.001f;
        for (int64_t i = 0; i < half; i++) {
            float pos_freq = powf((float)c->rope_theta, (float)(2 * i) / (float)d);
            float extra = 1.0f / pos_freq;
            float inter = 1.0f / ((float)factor * pos_freq);
            float ramp = ((float)i - flo) / (fhi - flo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float keep = 1.0f - ramp; /* HF's inv_freq_extrapolation_factor */
            inv_freq[i] = inter * (1.0f - keep) + extra * keep;
        }
        *mscale = (float)af;
    }
}

int cfg_int_list_or_int(ConfigReader *r, const char *key, int64_t **out) {
    cJSON *v = get(r, key);
    if (v && cJSON_IsNumber(v)) {
        *out = arena_alloc(r->a, sizeof(int64_t));
        (*out)[0] = cfg_int(r, key, -1);
        return 1;
    }
    return cfg_int_list(r, key, out);
}
