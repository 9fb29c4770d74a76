/* Small pieces both halves use: names of files. */
#define _GNU_SOURCE
#include "hp.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *hp_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Inserts ".TAG" before the profile's extension, so that out.pb.gz becomes
 * out.TAG.pb.gz and still reads as a gzipped profile. */
int hp_path_with_tag(char *out, size_t len, const char *path, const char *tag)
{
    const char *ext = strstr(hp_basename(path), ".pb");
    if (!ext)
        ext = path + strlen(path);
    int n = snprintf(out, len, "%.*s.%s%s", (int)(ext - path), path, tag, ext);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int hp_output_path(char *out, size_t len, const char *pattern, bool child)
{
    long pid = (long)getpid();
    size_t o = 0;
    bool had_pid = false;
    for (const char *p = pattern; *p; p++) {
        char tmp[32];
        const char *ins = NULL;
        char one[2] = {*p, 0};
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(tmp, sizeof tmp, "%ld", pid);
            ins = tmp;
            had_pid = true;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            ins = "%";
            p++;
        } else {
            ins = one;
        }
        size_t n = strlen(ins);
        if (o + n >= len)
            return -ENAMETOOLONG;
        memcpy(out + o, ins, n);
        o += n;
    }
    out[o] = 0;
    if (child && !had_pid) {
        char tmp[4096], tag[32];
        if (o >= sizeof tmp)
            return -ENAMETOOLONG;
        memcpy(tmp, out, o + 1);
        snprintf(tag, sizeof tag, "%ld", pid);
        return hp_path_with_tag(out, len, tmp, tag);
    }
    return 0;
}

bool hp_note_build_id(const char *notes, size_t len, size_t align, char *hex)
{
    /* Name and descriptor are padded to the segment's alignment. */
    size_t off = 0, pad = align == 8 ? 7 : 3;
    while (off + sizeof(ElfW(Nhdr)) <= len) {
        ElfW(Nhdr) nh;
        memcpy(&nh, notes + off, sizeof nh);
        size_t name = off + sizeof nh;
        size_t desc = (name + nh.n_namesz + pad) & ~pad;
        size_t next = (desc + nh.n_descsz + pad) & ~pad;
        if (next > len || next <= off)
            return false;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && !memcmp(notes + name, "GNU", 4) &&
            nh.n_descsz > 0 && nh.n_descsz <= 64) {
            const unsigned char *bits = (const unsigned char *)notes + desc;
            for (size_t i = 0; i < nh.n_descsz; i++)
                snprintf(hex + 2 * i, 3, "%02x", bits[i]);
            return true;
        }
        off = next;
    }
    return false;
}
