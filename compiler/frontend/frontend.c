#include "frontend.h"

#include "gguf_model.h"

#include <string.h>
#include <sys/stat.h>

bool model_load_config(Model *m, Arena *a, Diag *d, const char *dir) {
    memset(m, 0, sizeof *m);
    m->dir = arena_strdup(a, dir);
    int before_path = d->n_errors;
    if ((m->gguf_path = gguf_model_path(a, d, dir))) {
        if (!gguf_open(&m->gguf, a, d, m->gguf_path) || !gguf_model_config(&m->gguf, a, d, &m->cfg, &m->arch)) {
            m->arch = NULL;
            return false;
        }
        m->cfg.dir = m->dir;
        return true;
    }
    if (d->n_errors != before_path) return false;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        diag_error(d, "%s: not a folder; expected a Hugging Face model folder (config.json + *.safetensors)", dir);
        return false;
    }
    ConfigReader r;
    if (!cfg_open(&r, a, d, dir)) return false;
    ModelConfig *c = &m->cfg;
    c->dir = m->dir;
    c->model_type = cfg_str(&r, "model_type", NULL);
    if (!c->model_type) {
        diag_error(d, "%s: key 'model_type': missing; expected one of: %s", r.file, arch_names());
    } else if (!(m->arch = arch_find(c->model_type))) {
        diag_error(d, "%s: key 'model_type': '%s' is not supported; expected one of: %s", r.file, c->model_type,
                   arch_names());
    } else {
        int before = d->n_errors;
        m->arch->config(&r, c);
        if (d->n_errors != before) m->arch = NULL;
    }
    cfg_close(&r);
    return m->arch != NULL && !diag_failed(d);
}

bool model_load(Model *m, Arena *a, Diag *d, const char *dir) {
    if (!model_load_config(m, a, d, dir)) return false;
    if (m->gguf_path ? !gguf_model_tensors(&m->gguf, m->arch, &m->cfg, a, d, &m->tt) : !st_open_dir(&m->tt, a, d, dir))
        return false;
    GraphBuilder b = {
        .g = ir_graph_new(a),
        .c = &m->cfg,
        .tt = &m->tt,
        .d = d,
        .a = a,
        .weights_file = m->gguf_path ? m->gguf_path
                        : m->tt.n_shards > 1 ? "model.safetensors.index.json" : "model.safetensors",
    };
    b.g->family = m->arch->model_type;
    int before = d->n_errors;
    m->arch->build(&b);
    if (d->n_errors != before) return false;
    m->g = b.g;
    return ir_verify(m->g, d);
}

void model_close(Model *m) {
    st_close(&m->tt);
    gguf_close(&m->gguf);
}
