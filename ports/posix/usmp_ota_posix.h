/*
 * usmp_ota_posix.h - the OTA module's flash hooks (usmp_ota.h) on POSIX
 * files, for the simulated device (usmp_device --ota-dir) and tests.
 *
 * A state directory holds:
 *   slot-a.bin, slot-b.bin   the two slots; the boot record names the one
 *                            that runs, the other receives updates
 *   boot                     the boot record: "slot b\nversion 9\n";
 *                            absent: slot a runs the version given to
 *                            usmp_ota_posix_open (--fw-version)
 *   progress                 the transfer in progress: the 124-byte
 *                            manifest, then next_offset (u32 big-endian);
 *                            absent: none
 *
 * Conventions
 *  - The boot record and the progress record are replaced atomically: the
 *    new content goes to a temporary file, which is fsynced and renamed
 *    over the old one, and the directory is fsynced. A kill -9 or a power
 *    loss leaves the old record or the new one, never a mix.
 *  - The progress record never names bytes that are not durable in the
 *    slot: it is rewritten only every sync_bytes (USMP_OTA_POSIX_SYNC_BYTES) of image,
 *    after an fdatasync of the slot (and at the start of a transfer). A
 *    process killed, or a machine that lost power, in between resumes
 *    from the last such point and writes the bytes after it again.
 *  - finish() fdatasyncs the slot and hashes its first image_size bytes
 *    through the crypto seam from a read-only mapping of the file: no
 *    image-sized buffer is allocated.
 *  - Not thread-safe; one usmp_ota_posix_t per state directory and process.
 */
#ifndef USMP_OTA_POSIX_H
#define USMP_OTA_POSIX_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_ota.h"

#if USMP_OTA

/* How much image may be written between two fsyncs of the slot and the
 * progress record. */
#define USMP_OTA_POSIX_SYNC_BYTES (64u * 1024u)

typedef struct {
    char dir[512];
    char running_slot; /* 'a' or 'b' */
    uint32_t running_version;
    int slot_fd; /* the receiving slot, open while a transfer runs */
    uint32_t image_size;
    uint32_t synced_offset; /* the slot is durable up to here */
    uint32_t sync_bytes;    /* USMP_OTA_POSIX_SYNC_BYTES; tests may lower it */
    usmp_ota_flash_t hooks; /* user = this struct */
} usmp_ota_posix_t;

/* Opens (creating) the state directory dir and reads its boot record.
 * default_version is the running version while no update was ever
 * activated. Fills p->hooks for usmp_ota_config_t.flash. Returns 0, or -1
 * with errno set (a directory that cannot be created, a boot record that
 * cannot be read or parsed). */
int usmp_ota_posix_open(usmp_ota_posix_t *p, const char *dir, uint32_t default_version);

/* Closes the slot file, if open. */
void usmp_ota_posix_close(usmp_ota_posix_t *p);

#endif /* USMP_OTA */

#endif /* USMP_OTA_POSIX_H */
