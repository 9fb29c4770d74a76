/* rb_late's one entry point, called by rb_exit so that the library is linked. */
#ifndef RB_LATE_H
#define RB_LATE_H
#include <stdbool.h>
/* Allocates a few blocks that the library's destructor frees after the dump. */
void late_keep(void);
#endif
