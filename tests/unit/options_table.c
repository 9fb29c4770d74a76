/* Prints heapprof's table of variables (record/config.c), one per line,
 * tab-separated: name, older spelling (or -), kind, default, minimum,
 * maximum, read in setuid programs (0/1), hidden (0/1), doc. For
 * tests/test_options.py, which holds the README and the wrapper to it. */
#include "hp.h"

#include <stdio.h>

int main(void)
{
    static const char *const kinds[] = {"path", "int", "size", "bool", "text"};
    size_t n;
    const struct hp_option *o = hp_options(&n);
    for (size_t i = 0; i < n; i++)
        printf("%s\t%s\t%s\t%lld\t%lld\t%lld\t%d\t%d\t%s\n", o[i].name,
               o[i].alias ? o[i].alias : "-", kinds[o[i].kind], o[i].def, o[i].min, o[i].max,
               !o[i].secure, o[i].hidden, o[i].doc);
    return 0;
}
