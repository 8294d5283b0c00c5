/*
 * usmp_ota_posix.c - the OTA flash hooks on two slot files, a boot record
 * and a progress record in a state directory (usmp_ota_posix.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_ota_posix.h"

#if USMP_OTA

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "usmp_crypto.h"
#include "usmp_wire.h"

#define PROGRESS_BYTES (USMP_OTA_MANIFEST_BYTES + 4u)

static int path_of(const usmp_ota_posix_t *p, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", p->dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static char receiving_slot(const usmp_ota_posix_t *p)
{
    return p->running_slot == 'a' ? 'b' : 'a';
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sync_dir(const usmp_ota_posix_t *p)
{
    int fd = open(p->dir, O_RDONLY | O_DIRECTORY);
    int rc;
    if (fd < 0) {
        return -1;
    }
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Replaces dir/name with data atomically (usmp_ota_posix.h: temporary
 * file, fsync, rename, fsync of the directory); data NULL removes it. */
static int replace_file(const usmp_ota_posix_t *p, const char *name, const uint8_t *data,
                        size_t len)
{
    char path[600], tmp[620];
    int fd;

    if (path_of(p, name, path, sizeof path) != 0 ||
        snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return -1;
    }
    if (data == NULL) {
        if (unlink(path) != 0 && errno != ENOENT) {
            return -1;
        }
        return sync_dir(p);
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -1;
    }
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return sync_dir(p);
}

/* ------------------------------------------------------------ the hooks */

static int hook_begin(void *user, uint32_t image_size, uint32_t resume_offset)
{
    usmp_ota_posix_t *p = user;
    char name[16], path[600];

    usmp_ota_posix_close(p);
    snprintf(name, sizeof name, "slot-%c.bin", receiving_slot(p));
    if (path_of(p, name, path, sizeof path) != 0) {
        return -1;
    }
    /* A new image erases the slot (truncates it); a resumed one keeps the
     * bytes already written. */
    p->slot_fd = open(path, O_RDWR | O_CREAT | (resume_offset == 0 ? O_TRUNC : 0), 0644);
    if (p->slot_fd < 0) {
        return -1;
    }
    p->image_size = image_size;
    p->synced_offset = resume_offset;
    return 0;
}

static int hook_write(void *user, uint32_t offset, const uint8_t *data, size_t len)
{
    usmp_ota_posix_t *p = user;
    while (len > 0) {
        ssize_t n = pwrite(p->slot_fd, data, len, (off_t)offset);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
        offset += (uint32_t)n;
    }
    return 0;
}

static int hook_finish(void *user, uint8_t digest[USMP_OTA_DIGEST_BYTES])
{
    usmp_ota_posix_t *p = user;
    usmp_slice_t part;
    struct stat st;
    void *map;
    int rc;

    if (p->slot_fd < 0 || fdatasync(p->slot_fd) != 0 || fstat(p->slot_fd, &st) != 0 ||
        (uint64_t)st.st_size < p->image_size) {
        return -1;
    }
    /* The slot as it is on disk, read back, not what was sent (usmp_ota.h). */
    map = mmap(NULL, p->image_size, PROT_READ, MAP_PRIVATE, p->slot_fd, 0);
    if (map == MAP_FAILED) {
        return -1;
    }
    part.ptr = map;
    part.len = p->image_size;
    rc = usmp_crypto_sha256(digest, &part, 1) == USMP_CRYPTO_OK ? 0 : -1;
    munmap(map, p->image_size);
    return rc;
}

static int hook_activate(void *user, uint32_t firmware_version)
{
    usmp_ota_posix_t *p = user;
    char record[64];
    int n = snprintf(record, sizeof record, "slot %c\nversion %lu\n", receiving_slot(p),
                     (unsigned long)firmware_version);

    if (n <= 0 || (size_t)n >= sizeof record) {
        return -1;
    }
    usmp_ota_posix_close(p);
    /* The one switch: the boot record names the new slot, or the old one. */
    return replace_file(p, "boot", (const uint8_t *)record, (size_t)n);
}

static uint32_t hook_running_version(void *user)
{
    return ((usmp_ota_posix_t *)user)->running_version;
}

static int hook_save_progress(void *user, const uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                              uint32_t next_offset)
{
    usmp_ota_posix_t *p = user;
    uint8_t record[PROGRESS_BYTES];

    if (manifest == NULL) {
        return replace_file(p, "progress", NULL, 0);
    }
    /* Only at the start and every sync_bytes, after the
     * slot is durable up to next_offset (usmp_ota_posix.h). */
    if (next_offset != 0 && next_offset - p->synced_offset < p->sync_bytes) {
        return 0;
    }
    if (p->slot_fd >= 0 && fdatasync(p->slot_fd) != 0) {
        return -1;
    }
    memcpy(record, manifest, USMP_OTA_MANIFEST_BYTES);
    usmp_put_be(record + USMP_OTA_MANIFEST_BYTES, next_offset, 4);
    if (replace_file(p, "progress", record, sizeof record) != 0) {
        return -1;
    }
    p->synced_offset = next_offset;
    return 0;
}

static int hook_load_progress(void *user, uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                              uint32_t *next_offset)
{
    usmp_ota_posix_t *p = user;
    uint8_t record[PROGRESS_BYTES + 1];
    char path[600];
    ssize_t n;
    int fd;

    if (path_of(p, "progress", path, sizeof path) != 0 || (fd = open(path, O_RDONLY)) < 0) {
        return 0;
    }
    n = read(fd, record, sizeof record);
    close(fd);
    if (n != (ssize_t)PROGRESS_BYTES) {
        return 0; /* not a record this port wrote: the module starts over */
    }
    memcpy(manifest, record, USMP_OTA_MANIFEST_BYTES);
    *next_offset = (uint32_t)usmp_get_be(record + USMP_OTA_MANIFEST_BYTES, 4);
    return 1;
}

/* ------------------------------------------------------------- lifecycle */

/* Reads "slot X\nversion N\n". Returns 0 (also when there is none), -1 for
 * a record that does not parse. */
static int read_boot_record(usmp_ota_posix_t *p)
{
    char path[600], text[64];
    char slot = 0;
    unsigned long version = 0;
    ssize_t n;
    int fd;

    if (path_of(p, "boot", path, sizeof path) != 0) {
        return -1;
    }
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) {
        errno = EINVAL;
        return -1;
    }
    text[n] = '\0';
    if (sscanf(text, "slot %c\nversion %lu", &slot, &version) != 2 ||
        (slot != 'a' && slot != 'b') || version > 0xFFFFFFFFul) {
        errno = EINVAL;
        return -1;
    }
    p->running_slot = slot;
    p->running_version = (uint32_t)version;
    return 0;
}

int usmp_ota_posix_open(usmp_ota_posix_t *p, const char *dir, uint32_t default_version)
{
    char path[600];

    if (p == NULL || dir == NULL || strlen(dir) >= sizeof p->dir) {
        errno = EINVAL;
        return -1;
    }
    memset(p, 0, sizeof *p);
    memcpy(p->dir, dir, strlen(dir) + 1);
    p->slot_fd = -1;
    p->running_slot = 'a';
    p->running_version = default_version;
    p->sync_bytes = USMP_OTA_POSIX_SYNC_BYTES;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    if (read_boot_record(p) != 0) {
        return -1;
    }
    /* A process killed between writing a temporary record and renaming it
     * leaves the temporary file behind; the record itself is intact. */
    if (path_of(p, "progress.tmp", path, sizeof path) == 0) {
        (void)unlink(path);
    }
    if (path_of(p, "boot.tmp", path, sizeof path) == 0) {
        (void)unlink(path);
    }
    p->hooks.user = p;
    p->hooks.begin = hook_begin;
    p->hooks.write = hook_write;
    p->hooks.finish = hook_finish;
    p->hooks.activate = hook_activate;
    p->hooks.running_version = hook_running_version;
    p->hooks.save_progress = hook_save_progress;
    p->hooks.load_progress = hook_load_progress;
    return 0;
}

void usmp_ota_posix_close(usmp_ota_posix_t *p)
{
    if (p != NULL && p->slot_fd >= 0) {
        close(p->slot_fd);
        p->slot_fd = -1;
    }
}

#endif /* USMP_OTA */
