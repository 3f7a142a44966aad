/* test_jinja: the chat-template interpreter (runtime/jinja.c) on the published templates of the
 * four families' instruct models (tests/data/chat_templates/), each rendered for a few
 * conversations and compared with strings derived by hand from the template text (the comment
 * above each case says how); then the subset's edges (whitespace rules, scoping, slices, string
 * methods) and the errors: unsupported names refused at parse, raise_exception surfaced,
 * unterminated tags, the depth and size bounds. */
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "test.h"

#ifndef MOEC_TEST_DATA
#define MOEC_TEST_DATA "tests/data"
#endif

typedef MoeChatMessage Msg;

static MoeJinja *load(const char *name) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/chat_templates/%s", MOEC_TEST_DATA, name);
    char *src = test_read_file(path, NULL);
    test_check(src != NULL, __FILE__, __LINE__, "read template", path, "cannot read");
    if (!src) return NULL;
    MoeJinja *t = moe_jinja_parse(src, err, sizeof err);
    test_check(t != NULL, __FILE__, __LINE__, path, "parses", err);
    free(src);
    return t;
}

/* Renders and compares with want (NULL: the render must fail with an error containing want_err). */
static void check_render(int line, const MoeJinja *t, const Msg *m, int n, bool agp, const char *bos, const char *eos,
                         const char *want, const char *want_err) {
    if (!t) return;
    char *out = NULL, err[512];
    int rc = moe_chat_render(t, m, n, agp, bos, eos, &out, err, sizeof err);
    if (want) {
        test_check(rc == 0 && !strcmp(out, want), __FILE__, line, "render", want, rc ? err : out);
    } else {
        test_check(rc != 0 && strstr(err, want_err), __FILE__, line, "render error", want_err, rc ? err : out);
        test_check(rc != 0 && !strchr(err, '\n'), __FILE__, line, "one-line error", "no newline", err);
    }
    free(out);
}
#define RENDER(t, m, agp, bos, eos, want) check_render(__LINE__, t, m, (int)(sizeof m / sizeof m[0]), agp, bos, eos, want, NULL)
#define RENDER_FAILS(t, m, agp, want_err) check_render(__LINE__, t, m, (int)(sizeof m / sizeof m[0]), agp, "<s>", "</s>", NULL, want_err)

/* Renders a template given inline with the conversation below, bos "<s>", eos "</s>" and the
 * generation prompt. */
static void check_inline(int line, const char *src, const char *want) {
    static const Msg conv[] = {{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}};
    char err[256];
    MoeJinja *t = moe_jinja_parse(src, err, sizeof err);
    test_check(t != NULL, __FILE__, line, src, "parses", err);
    if (t) check_render(line, t, conv, 3, true, "<s>", "</s>", want, NULL);
    moe_jinja_free(t);
}
#define INLINE(src, want) check_inline(__LINE__, src, want)

/* moe_jinja_parse must refuse src with exactly want as the message. */
static void check_refused(int line, const char *src, const char *want) {
    char err[256] = "";
    MoeJinja *t = moe_jinja_parse(src, err, sizeof err);
    test_check(t == NULL && !strcmp(err, want), __FILE__, line, "refused", want, t ? "(parsed)" : err);
    moe_jinja_free(t);
}
#define REFUSED(src, want) check_refused(__LINE__, src, want)

static const Msg sys_user[] = {{"system", "You are terse."}, {"user", "Hi"}};
static const Msg turns[] = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
static const Msg user_only[] = {{"user", "Hi"}};

static void test_mixtral(void) {
    MoeJinja *t = load("mixtral.jinja");
    /* a leading system message becomes system_message and loop_messages = messages[1:]; bos_token,
     * then the first user turn as ' [INST] ' + system_message + '\n\n' + content + ' [/INST]' (the
     * {%- ... %} tags and trim_blocks leave no whitespace of their own); add_generation_prompt is
     * not used by this template */
    RENDER(t, sys_user, false, "<s>", "</s>", "<s> [INST] You are terse.\n\nHi [/INST]");
    RENDER(t, sys_user, true, "<s>", "</s>", "<s> [INST] You are terse.\n\nHi [/INST]");
    /* no system message: ' [INST] ' + content + ' [/INST]', an assistant turn ' ' + content + eos */
    RENDER(t, turns, false, "<s>", "</s>", "<s> [INST] Hi [/INST] Hello!</s> [INST] Bye [/INST]");
    /* a system message alone: loop_messages is empty, only bos_token */
    static const Msg sys_only[] = {{"system", "S"}};
    RENDER(t, sys_only, true, "<s>", "</s>", "<s>");
    /* (role == 'user') != (loop.index0 % 2 == 0): two user turns in a row raise */
    static const Msg two_users[] = {{"user", "a"}, {"user", "b"}};
    RENDER_FAILS(t, two_users, true,
                 "chat template: After the optional system message, conversation roles must alternate "
                 "user/assistant/user/assistant/...");
    /* a tool turn in an assistant position passes the alternation check and hits the else branch */
    static const Msg tool[] = {{"user", "a"}, {"tool", "b"}};
    RENDER_FAILS(t, tool, true, "Only user and assistant roles are supported, with the exception of an initial optional system message!");
    moe_jinja_free(t);
}

static void test_qwen2_moe(void) {
    MoeJinja *t = load("qwen2_moe.jinja");
    /* messages[0] is the system message, so no default one; each message is '<|im_start|>' + role +
     * '\n' + content + '<|im_end|>' + '\n'; add_generation_prompt appends '<|im_start|>assistant\n' */
    RENDER(t, sys_user, false, "", "<|im_end|>", "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    RENDER(t, sys_user, true, "", "<|im_end|>",
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    /* loop.first and messages[0]['role'] != 'system': the default system message comes first */
    RENDER(t, turns, true, "", "<|im_end|>",
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    moe_jinja_free(t);
    /* the later Qwen1.5 variant: no '<|im_end|>' after a final turn unless a generation prompt follows,
     * and no generation prompt after an assistant turn (messages[-1]) */
    static const char variant[] =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
        "are a helpful assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content']}}{% if (loop.last and add_generation_prompt) or not loop.last %}{{ '<|im_end|>' + "
        "'\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{ "
        "'<|im_start|>assistant\\n' }}{% endif %}";
    char err[256];
    t = moe_jinja_parse(variant, err, sizeof err);
    static const Msg answered[] = {{"user", "Hi"}, {"assistant", "Hello!"}};
    RENDER(t, answered, false, "", "",
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!");
    RENDER(t, answered, true, "", "",
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n");
    moe_jinja_free(t);
}

static void test_qwen3_moe(void) {
    MoeJinja *t = load("qwen3_moe.jinja");
    /* tools is none: the else branch writes the system message; the loop skips it (system and
     * loop.first); a user turn is '<|im_start|>user\n' + content + '<|im_end|>\n'; the generation
     * prompt is '<|im_start|>assistant\n' (enable_thinking is not defined) */
    RENDER(t, sys_user, true, "", "<|im_end|>",
           "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    RENDER(t, sys_user, false, "", "<|im_end|>", "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    /* an assistant turn before the last user query (ns.last_query_index = 2, found walking
     * messages[::-1]) loses its reasoning: content = content.split('</think>')[-1].lstrip('\n') */
    static const Msg thought[] = {{"user", "Hi"}, {"assistant", "<think>\nhmm\n</think>\n\nHello!"}, {"user", "Bye"}};
    RENDER(t, thought, true, "", "<|im_end|>",
           "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
           "<|im_start|>assistant\n");
    /* the last turn, after the last query: '<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' +
     * content, where reasoning = split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
    static const Msg last_thought[] = {{"user", "Hi"}, {"assistant", "<think>\nhmm\n</think>\n\nHello!"}};
    RENDER(t, last_thought, false, "", "<|im_end|>",
           "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHello!<|im_end|>\n");
    /* consecutive tool turns share one user turn: the header when the previous message
     * (messages[loop.index0 - 1]) is no tool, '<|im_end|>\n' when the next one is none */
    static const Msg tools[] = {{"user", "Hi"}, {"assistant", "Calling."}, {"tool", "42"}, {"tool", "43"}};
    RENDER(t, tools, false, "", "<|im_end|>",
           "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nCalling.<|im_end|>\n<|im_start|>user\n"
           "<tool_response>\n42\n</tool_response>\n<tool_response>\n43\n</tool_response><|im_end|>\n");
    /* a user turn that is only '<tool_response>...</tool_response>' is not a query, so the last query
     * is message 0; the last assistant turn after it gets the <think> block, empty here, and the one
     * before it (not last, no reasoning) does not */
    static const Msg multi[] = {{"user", "Q"}, {"assistant", "A"}, {"user", "<tool_response>r</tool_response>"}, {"assistant", "B"}};
    RENDER(t, multi, false, "", "<|im_end|>",
           "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n<|im_start|>user\n"
           "<tool_response>r</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nB<|im_end|>\n");
    moe_jinja_free(t);
}

static void test_olmoe(void) {
    MoeJinja *t = load("olmoe.jinja");
    /* bos_token, then '<|system|>\n' + content + '\n' and '<|user|>\n' + content + '\n'; after the
     * last message, with add_generation_prompt, '<|assistant|>\n' */
    RENDER(t, sys_user, true, "<|endoftext|>", "<|endoftext|>",
           "<|endoftext|><|system|>\nYou are terse.\n<|user|>\nHi\n<|assistant|>\n");
    RENDER(t, sys_user, false, "<|endoftext|>", "<|endoftext|>", "<|endoftext|><|system|>\nYou are terse.\n<|user|>\nHi\n");
    /* an assistant turn that is not last: '<|assistant|>\n' + content + eos_token + '\n' */
    RENDER(t, turns, true, "<|endoftext|>", "<|endoftext|>",
           "<|endoftext|><|user|>\nHi\n<|assistant|>\nHello!<|endoftext|>\n<|user|>\nBye\n<|assistant|>\n");
    /* the last one: no '\n' after eos_token */
    static const Msg answered[] = {{"user", "Hi"}, {"assistant", "Hello!"}};
    RENDER(t, answered, false, "<|endoftext|>", "<|endoftext|>", "<|endoftext|><|user|>\nHi\n<|assistant|>\nHello!<|endoftext|>");
    RENDER(t, user_only, false, "", "", "<|user|>\nHi\n");
    moe_jinja_free(t);
}

/* The subset's rules, each against what Jinja2 (trim_blocks, lstrip_blocks) renders. */
static void test_subset(void) {
    /* trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before one;
     * a newline after {{ }} stays; one trailing newline of the template is dropped */
    INLINE("{% if true %}\n  a\n  {% endif %}\nb {{ 1 }}\nc\n", "  a\nb 1\nc");
    INLINE("  {%+ if true %}x{% endif %}", "  x");
    INLINE("a  {%- if true -%}  b  {%- endif -%}  c", "abc");
    INLINE("{# note #}\n{{- ' x ' -}}\n  y", " x y");
    /* loop variables; a set inside a loop stays in it; a namespace carries state out */
    INLINE("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
           "{{ loop.length }} {% endfor %}",
           "103TrueFalse3 212FalseFalse3 321FalseTrue3 ");
    INLINE("{% set x = 1 %}{% set ns = namespace(n=0) %}{% for m in messages %}{% set x = 2 %}{% set ns.n = ns.n + 1 %}"
           "{% endfor %}{{ x }}{{ ns.n }}",
           "13");
    INLINE("{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.content }}{% else %}none{% endfor %}"
           "{% for x in [] %}{% else %}empty{% endfor %}",
           "1Hi2Yoempty");
    /* slices, negative indices, string methods, filters, tests, operators */
    INLINE("{{ messages[::-1][0].content }}{{ messages[1:]|length }}{{ messages[-1]['role'] }}{{ 'h\xc3\xa9llo'[1:3] }}"
           "{{ 'h\xc3\xa9llo'|length }}",
           "Yo2assistant\xc3\xa9l5");
    INLINE("{{ ' a  b '.split() }}{{ 'a,b,,c'.split(',') }}{{ '--x--'.strip('-') }}{{ '\\nx\\n'.lstrip('\\n') }}"
           "{{ 'ab'.startswith('a') }}{{ 'ab'.endswith('a') }}{{ 'abab'.replace('b', 'X') }}",
           "['a', 'b']['a', 'b', '', 'c']xx\nTrueFalseaXaX");
    INLINE("{{ '  t '|trim }}|{{ [1, 'a', none, true]|tojson }}|{{ {'k': \"q\\\"\\n\"}|tojson }}|{{ 3|string ~ none }}",
           "t|[1, \"a\", null, true]|{\"k\": \"q\\\"\\n\"}|3None");
    INLINE("{{ x|default('d') }}{{ ''|default('e', true) }}{{ ['a', 'b']|join('-') }}{{ [3, 4]|first }}{{ 'xyz'|last }}",
           "dea-b3z");
    INLINE("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ 1 is not string }}{{ false is false }}"
           "{{ messages[0] is mapping }}{{ 3 is odd }}",
           "FalseTrueTrueTrueTrueTrueTrue");
    INLINE("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ (1 + 2) * 3 - 4 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 1 < 2 < 3 }}"
           " {{ 'b' in 'abc' }} {{ 'z' not in ['a'] }} {{ 'role' in messages[0] }}",
           "3 -4 2 5 abab [1, 2] True True True True");
    INLINE("{{ 1 and 'x' }}{{ 0 or '' or 'z' }}{{ not 1 == 2 }}{{ 'y' if false }}|{{ 'a' if false else 'b' }}{{ none }}"
           "{{ messages[0].get('nope', 'g') }}",
           "xzTrue|bNoneg");
    /* brackets keep a '}}' inside a tag; a join, first or last iterates; repetition; reprs */
    INLINE("{{ {'a': {'b': 1}} }}{{ 'abc'|join('-') }}{{ {'x': 1, 'y': 2}|first }}{{ [1] * 2 }}{{ 2 * 'ab' }}{{ [x] }}"
           "{{ x|last }}|{% set ns = namespace(a=1) %}{{ ns }}",
           "{'a': {'b': 1}}a-b-cx[1, 1]abab[Undefined]|<Namespace {'a': 1}>");
    /* the globals a template may look at */
    INLINE("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}{{ enable_thinking is defined }}",
           "<s></s>TrueTrueFalse");
}

static void test_errors(void) {
    /* unsupported names are refused at parse time, by name, with the line */
    REFUSED("a\n\n{{ x|wordcount }}", "chat template: line 3: filter 'wordcount' is not supported");
    REFUSED("{% macro m() %}{% endmacro %}", "chat template: line 1: tag 'macro' is not supported");
    REFUSED("{{ x.format(1) }}", "chat template: line 1: method 'format' is not supported");
    REFUSED("{{ strftime_now('%Y') }}", "chat template: line 1: function 'strftime_now' is not supported");
    REFUSED("{% if x is divisibleby 3 %}{% endif %}", "chat template: line 1: test 'divisibleby' is not supported");
    REFUSED("{% for k, v in d %}{% endfor %}", "chat template: line 1: for with several loop variables is not supported");
    REFUSED("{{ 1.5 }}", "chat template: line 1: float literals are not supported");
    REFUSED("{{ 4 / 2 }}", "chat template: line 1: operator '/' is not supported (it makes a float)");
    REFUSED("{% include 'x' %}", "chat template: line 1: tag 'include' is not supported");
    /* malformed */
    REFUSED("ok\n{{ x ", "chat template: line 2: unterminated '{{' tag");
    REFUSED("{% if x %}\nyes", "chat template: line 1: 'if' is never closed; expected 'endif'");
    REFUSED("{% for x in y %}{% endif %}", "chat template: line 1: unexpected 'endif'");
    REFUSED("{# note", "chat template: line 1: unterminated comment");
    REFUSED("{{ 'abc }}", "chat template: line 1: unterminated string");
    REFUSED("{{ x + }}", "chat template: line 1: expected an expression; got '}}'");
    REFUSED("{{ 99999999999999999999 }}", "chat template: line 1: integer literal too large");
    /* as Jinja2: no inline if in an if tag's condition; a test followed by a name, literal or
     * bracket would take it as an argument, which no supported test has */
    REFUSED("{% if a if b else c %}{% endif %}", "chat template: line 1: expected '%}'; got 'if'");
    REFUSED("{{ x is none if y }}", "chat template: line 1: test 'none' takes no argument");
    /* depth bound: parentheses and nested blocks */
    char deep[1024] = "{{ ";
    for (int i = 0; i < 100; i++) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 100; i++) strcat(deep, ")");
    strcat(deep, " }}");
    REFUSED(deep, "chat template: line 1: nested more than 64 levels deep");
    char blocks[2048] = "";
    for (int i = 0; i < 70; i++) strcat(blocks, "{% if 1 %}");
    REFUSED(blocks, "chat template: line 1: nested more than 64 levels deep");
    /* chains: a + b + ... nests the tree as deep as it is long, so its length is bounded too; a
     * long chain within the bound renders */
    char *chain = malloc(16 * 2000 + 16);
    strcpy(chain, "{{ 0");
    for (int i = 0; i < 1500; i++) strcat(chain, "+1");
    strcat(chain, " }}");
    REFUSED(chain, "chat template: line 1: an expression chains more than 1024 operations");
    strcpy(chain, "{{ 0");
    for (int i = 0; i < 1000; i++) strcat(chain, " + 1");
    strcat(chain, " }}");
    INLINE(chain, "1000");
    free(chain);
    /* render errors: one line, the template's own message for raise_exception */
    static const Msg m[] = {{"user", "Hi"}};
    char err[256];
    MoeJinja *t = moe_jinja_parse("{{ raise_exception('no ' ~ messages[0].role) }}", err, sizeof err);
    RENDER_FAILS(t, m, true, "chat template: no user");
    moe_jinja_free(t);
    t = moe_jinja_parse("a\n{{ messages[0].content.nothing.more }}", err, sizeof err);
    RENDER_FAILS(t, m, true, "chat template: line 2: 'nothing' is undefined");
    moe_jinja_free(t);
    t = moe_jinja_parse("{{ 1 + 'a' }}", err, sizeof err);
    RENDER_FAILS(t, m, true, "unsupported operand types for +: int and string");
    moe_jinja_free(t);
    t = moe_jinja_parse("{{ +'a' }}", err, sizeof err);
    RENDER_FAILS(t, m, true, "bad operand type for unary +: string");
    moe_jinja_free(t);
    /* bounds: memory (a string doubled 40 times), steps (100^4 iterations), output size */
    t = moe_jinja_parse("{% set ns = namespace(s='x') %}{% for i in [1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,"
                        "5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10] %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                        err, sizeof err);
    RENDER_FAILS(t, m, true, "rendering needs more than 256 MiB of memory");
    moe_jinja_free(t);
    char loops[4096] = "{% set l = [";
    for (int i = 0; i < 100; i++) strcat(loops, i ? ",0" : "0");
    strcat(loops, "] %}{% for a in l %}{% for b in l %}{% for c in l %}{% for d in l %}{% set x = 1 %}"
                  "{% endfor %}{% endfor %}{% endfor %}{% endfor %}");
    t = moe_jinja_parse(loops, err, sizeof err);
    RENDER_FAILS(t, m, true, "rendering takes more than 20000000 steps");
    moe_jinja_free(t);
    /* comparing or searching big strings costs steps by their size (a megabyte compared 100000 times) */
    t = moe_jinja_parse("{% set s = 'x' * 1000000 %}{% for i in [0] * 100000 %}{% if s == s and 'y' in s %}{% endif %}"
                        "{% endfor %}",
                        err, sizeof err);
    RENDER_FAILS(t, m, true, "rendering takes more than 20000000 steps");
    moe_jinja_free(t);
    t = moe_jinja_parse("{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' * 65536 %}{% for i in [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17] %}"
                        "{{ s }}{% endfor %}",
                        err, sizeof err);
    RENDER_FAILS(t, m, true, "the output is larger than 32 MiB");
    moe_jinja_free(t);
}

int main(void) {
    test_mixtral();
    test_qwen2_moe();
    test_qwen3_moe();
    test_olmoe();
    test_subset();
    test_errors();
    return test_done();
}
