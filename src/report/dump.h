/* Dumps (report/dump.c): the heap profile, numbered snapshots and CPU
 * profiles written to files, one at a time.
 */
#ifndef HP_REPORT_DUMP_H
#define HP_REPORT_DUMP_H

#include "iface.h"

/* Writes a profile to path; with nleaks (at exit), the leak check first and
 * the leak summary after, and the number of stacks that fail the CI gate
 * into *nleaks. 0 or -errno. */
int hp_dump_to(const char *path, enum hp_dump_kind kind, int *nleaks);
/* A numbered snapshot beside the exit profile (out.pb.gz gives
 * out.0001.pb.gz, out.0002.pb.gz, ...): its number, or -errno. */
int hp_dump_snapshot(void);
/* Writes the CPU profile p to path, atomically. 0 or -errno. */
int hp_dump_cpu(const char *path, struct hp_cpu_profile *p);
/* In a forked child. */
void hp_dump_child(void);

#endif
