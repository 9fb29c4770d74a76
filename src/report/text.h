/* Text in an arena (report/text.c): the builder every text the reporting
 * half makes goes through (the leak summary, the timeline's HTML and JSON,
 * the endpoint's pages), and the escaping that HTML and JSON need.
 */
#ifndef HP_REPORT_TEXT_H
#define HP_REPORT_TEXT_H

#include "hp.h"

#include <stdarg.h>

/* Grows by doubling in the arena a (the old copies stay there until it is
 * released): start with {.a = arena}. p is NUL-terminated when not NULL. */
struct hp_text {
    struct hp_arena *a;
    char *p;
    size_t len, cap;
    bool oom; /* some text could not be added: the rest is not either */
};
void hp_text_put(struct hp_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hp_text_vput(struct hp_text *t, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* n bytes as they are. */
void hp_text_add(struct hp_text *t, const char *s, size_t n);
/* s (NULL: nothing) as HTML text or attribute value: & < > " ' escaped. */
void hp_text_html(struct hp_text *t, const char *s);
/* s (NULL: "") as a JSON string, its quotes included. */
void hp_text_json(struct hp_text *t, const char *s);

#endif
