/* Text in an arena: a printf-like builder whose memory is a dump's (or a
 * request's) arena, never the program's heap, and the escaping of what goes
 * into HTML and JSON. The bottom of the reporting half: it calls nothing
 * but the arena (common/mem.c) and libc's formatting.
 */
#include "text.h"
#include "hp.h"

#include <stdio.h>
#include <string.h>

/* Room for n more bytes and a NUL. */
static bool reserve(struct hp_text *t, size_t n)
{
    if (t->oom)
        return false;
    if (t->p && t->cap - t->len > n)
        return true;
    size_t nc = (t->cap ? t->cap * 2 : 16384) + n;
    char *np = hp_arena_alloc(t->a, nc);
    if (!np) {
        t->oom = true;
        return false;
    }
    if (t->len)
        memcpy(np, t->p, t->len);
    t->p = np;
    t->cap = nc;
    return true;
}

void hp_text_vput(struct hp_text *t, const char *fmt, va_list ap)
{
    for (;;) {
        va_list aq;
        va_copy(aq, ap);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? room : 0, fmt, aq);
        va_end(aq);
        if (n < 0 || t->oom)
            return;
        if (t->p && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        if (!reserve(t, (size_t)n))
            return;
    }
}

void hp_text_put(struct hp_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hp_text_vput(t, fmt, ap);
    va_end(ap);
}

void hp_text_add(struct hp_text *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

void hp_text_html(struct hp_text *t, const char *s)
{
    while (s && *s) {
        size_t run = strcspn(s, "&<>\"'");
        hp_text_add(t, s, run);
        s += run;
        if (!*s)
            break;
        const char *e = *s == '&'   ? "&amp;"
                        : *s == '<' ? "&lt;"
                        : *s == '>' ? "&gt;"
                        : *s == '"' ? "&quot;"
                                    : "&#39;";
        hp_text_add(t, e, strlen(e));
        s++;
    }
}

void hp_text_json(struct hp_text *t, const char *s)
{
    hp_text_add(t, "\"", 1);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            hp_text_put(t, "\\%c", c);
        else if (c < 0x20)
            hp_text_put(t, "\\u%04x", c);
        else
            hp_text_add(t, s, 1);
    }
    hp_text_add(t, "\"", 1);
}
