/* elfutils (libdw and its libelf), loaded at the first symbol lookup rather
 * than with the reporting half: report/dw.c.
 *
 * Loading them costs a process about 0.25 ms (two libraries and libbz2),
 * and a profile with no samples, a leak summary with no stacks, need none
 * of them. The files that call them (symbols.c, goroutine.c) include this
 * header after elfutils' own: every function they use goes through a table
 * filled in by hp_dw_load, under its own name (the macros below), so that
 * the code reads as calls into libdw do.
 */
#ifndef HP_DW_H
#define HP_DW_H

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>

#define HP_DW_FUNCTIONS(X)                                                                         \
    X(dwarf_attr)                                                                                  \
    X(dwarf_attr_integrate)                                                                        \
    X(dwarf_child)                                                                                 \
    X(dwarf_filesrc)                                                                               \
    X(dwarf_formstring)                                                                            \
    X(dwarf_formudata)                                                                             \
    X(dwarf_getscopes)                                                                             \
    X(dwarf_getscopes_die)                                                                         \
    X(dwarf_getsrcfiles)                                                                           \
    X(dwarf_haschildren)                                                                           \
    X(dwarf_ranges)                                                                                \
    X(dwarf_siblingof)                                                                             \
    X(dwarf_tag)                                                                                   \
    X(dwfl_addrmodule)                                                                             \
    X(dwfl_attach_state)                                                                           \
    X(dwfl_begin)                                                                                  \
    X(dwfl_build_id_find_elf)                                                                      \
    X(dwfl_end)                                                                                    \
    X(dwfl_frame_pc)                                                                               \
    X(dwfl_getthread_frames)                                                                       \
    X(dwfl_line_comp_dir)                                                                          \
    X(dwfl_lineinfo)                                                                               \
    X(dwfl_linux_proc_find_elf)                                                                    \
    X(dwfl_linux_proc_report)                                                                      \
    X(dwfl_module_addrdie)                                                                         \
    X(dwfl_module_addrinfo)                                                                        \
    X(dwfl_module_build_id)                                                                        \
    X(dwfl_module_getelf)                                                                          \
    X(dwfl_module_getsrc)                                                                          \
    X(dwfl_module_getsym_info)                                                                     \
    X(dwfl_module_getsymtab)                                                                       \
    X(dwfl_module_info)                                                                            \
    X(dwfl_offline_section_address)                                                                \
    X(dwfl_report_begin)                                                                           \
    X(dwfl_report_elf)                                                                             \
    X(dwfl_report_end)                                                                             \
    X(dwfl_standard_find_debuginfo)                                                                \
    X(dwfl_thread_state_register_pc)                                                               \
    X(dwfl_thread_state_registers)                                                                 \
    X(elf_getdata)                                                                                 \
    X(elf_getscn)                                                                                  \
    X(elf_getshdrstrndx)                                                                           \
    X(elf_nextscn)                                                                                 \
    X(elf_strptr)                                                                                  \
    X(gelf_getehdr)                                                                                \
    X(gelf_getrela)                                                                                \
    X(gelf_getshdr)                                                                                \
    X(gelf_getsym)

struct hp_dw {
#define HP_DW_FIELD(f) __typeof__(f) *f;
    HP_DW_FUNCTIONS(HP_DW_FIELD)
#undef HP_DW_FIELD
};
extern struct hp_dw hp_dw;

/* Loads them, once: false (and one line said why) if they cannot be.
 * hp_dw_child: in a forked child. */
bool hp_dw_load(void);
void hp_dw_child(void);
/* libdwfl's callbacks for this process's modules, and for a file at a
 * given bias (an unloaded library); only once hp_dw_load returned true. */
const Dwfl_Callbacks *hp_dw_proc_callbacks(void);
const Dwfl_Callbacks *hp_dw_offline_callbacks(void);

#ifndef HP_DW_LOADER
#define HP_DW_CALL(f) (hp_dw.f)
#define dwarf_attr HP_DW_CALL(dwarf_attr)
#define dwarf_attr_integrate HP_DW_CALL(dwarf_attr_integrate)
#define dwarf_child HP_DW_CALL(dwarf_child)
#define dwarf_filesrc HP_DW_CALL(dwarf_filesrc)
#define dwarf_formstring HP_DW_CALL(dwarf_formstring)
#define dwarf_formudata HP_DW_CALL(dwarf_formudata)
#define dwarf_getscopes HP_DW_CALL(dwarf_getscopes)
#define dwarf_getscopes_die HP_DW_CALL(dwarf_getscopes_die)
#define dwarf_getsrcfiles HP_DW_CALL(dwarf_getsrcfiles)
#define dwarf_haschildren HP_DW_CALL(dwarf_haschildren)
#define dwarf_ranges HP_DW_CALL(dwarf_ranges)
#define dwarf_siblingof HP_DW_CALL(dwarf_siblingof)
#define dwarf_tag HP_DW_CALL(dwarf_tag)
#define dwfl_addrmodule HP_DW_CALL(dwfl_addrmodule)
#define dwfl_attach_state HP_DW_CALL(dwfl_attach_state)
#define dwfl_begin HP_DW_CALL(dwfl_begin)
#define dwfl_build_id_find_elf HP_DW_CALL(dwfl_build_id_find_elf)
#define dwfl_end HP_DW_CALL(dwfl_end)
#define dwfl_frame_pc HP_DW_CALL(dwfl_frame_pc)
#define dwfl_getthread_frames HP_DW_CALL(dwfl_getthread_frames)
#define dwfl_line_comp_dir HP_DW_CALL(dwfl_line_comp_dir)
#define dwfl_lineinfo HP_DW_CALL(dwfl_lineinfo)
#define dwfl_linux_proc_find_elf HP_DW_CALL(dwfl_linux_proc_find_elf)
#define dwfl_linux_proc_report HP_DW_CALL(dwfl_linux_proc_report)
#define dwfl_module_addrdie HP_DW_CALL(dwfl_module_addrdie)
#define dwfl_module_addrinfo HP_DW_CALL(dwfl_module_addrinfo)
#define dwfl_module_build_id HP_DW_CALL(dwfl_module_build_id)
#define dwfl_module_getelf HP_DW_CALL(dwfl_module_getelf)
#define dwfl_module_getsrc HP_DW_CALL(dwfl_module_getsrc)
#define dwfl_module_getsym_info HP_DW_CALL(dwfl_module_getsym_info)
#define dwfl_module_getsymtab HP_DW_CALL(dwfl_module_getsymtab)
#define dwfl_module_info HP_DW_CALL(dwfl_module_info)
#define dwfl_offline_section_address HP_DW_CALL(dwfl_offline_section_address)
#define dwfl_report_begin HP_DW_CALL(dwfl_report_begin)
#define dwfl_report_elf HP_DW_CALL(dwfl_report_elf)
#define dwfl_report_end HP_DW_CALL(dwfl_report_end)
#define dwfl_standard_find_debuginfo HP_DW_CALL(dwfl_standard_find_debuginfo)
#define dwfl_thread_state_register_pc HP_DW_CALL(dwfl_thread_state_register_pc)
#define dwfl_thread_state_registers HP_DW_CALL(dwfl_thread_state_registers)
#define elf_getdata HP_DW_CALL(elf_getdata)
#define elf_getscn HP_DW_CALL(elf_getscn)
#define elf_getshdrstrndx HP_DW_CALL(elf_getshdrstrndx)
#define elf_nextscn HP_DW_CALL(elf_nextscn)
#define elf_strptr HP_DW_CALL(elf_strptr)
#define gelf_getehdr HP_DW_CALL(gelf_getehdr)
#define gelf_getrela HP_DW_CALL(gelf_getrela)
#define gelf_getshdr HP_DW_CALL(gelf_getshdr)
#define gelf_getsym HP_DW_CALL(gelf_getsym)
#endif

#endif
