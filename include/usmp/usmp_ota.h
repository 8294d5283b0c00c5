/*
 * usmp_ota.h - signed firmware updates on the device (spec/ota.md).
 *
 * The OTA module answers the gateway on CONTROL channel 0x01 (spec
 * protocol.md 6.7): it reports STATUS when a session opens, checks an
 * OFFERed manifest (Ed25519 signature first, then format, anti-rollback,
 * hardware id and size: ota.md 4.1), pulls the image chunk by chunk with
 * REQUESTs, writes each chunk through the platform's flash hooks, persists
 * (manifest, next_offset) so that a dropped session or a reboot resumes,
 * checks the SHA-256 of the written slot and only then switches the boot
 * slot and answers RESULT ACTIVATED.
 *
 *     static usmp_ota_t ota;
 *     usmp_ota_config_t oc = { .public_key = OTA_KEY, .hardware_id = HW,
 *                              .slot_size = 1536 * 1024, .flash = &my_hooks };
 *     usmp_connect(&ctx, &transport, &cfg);
 *     usmp_ota_attach(&ctx, &ota, &oc);      // after every usmp_connect
 *     for (;;) {
 *         usmp_recv(&ctx, buf, sizeof buf, 100);   // or usmp_keepalive_tick
 *         if (usmp_ota_restart_due(&ota)) { usmp_close(&ctx); restart(); }
 *     }
 *
 * Conventions
 *  - Compiled only with USMP_OTA=1 (usmp_options.h; CMake -DUSMP_OTA=ON, the
 *    default on the host; ESP-IDF: CONFIG_USMP_OTA). Without it neither this
 *    module nor its hooks exist and the device API does not grow.
 *  - Functions return USMP_OK or a negative USMP_ERR_*; hooks return 0 for
 *    success and anything else for a failure (reported as FLASH_ERROR).
 *  - RAM: usmp_ota_t (248 bytes on Cortex-M4) and nothing else. A CHUNK's data is
 *    written to flash straight from the engine's receive buffer, where the
 *    record was opened: no chunk is ever copied, so the device holds one
 *    chunk, in the buffer it already has. max_chunk is at most the own
 *    max_record - 6 (ota.md 4.2).
 *  - Security (spec/security.md, ota.md 7): there is no setting that skips
 *    the signature, the hash or the version check, and no default key. The
 *    write and begin hooks are never called before an OFFER has passed every
 *    check of ota.md 4.1.
 *  - Not thread-safe: the module belongs to the task that owns the context.
 *
 * Why finish() returns the slot's digest (instead of the module hashing
 * the chunks as they pass): the digest that matters is that of the bytes
 * the bootloader will run, read back from the slot, so a write the flash
 * did not take, or bytes changed after they were written, fail the check.
 * It also keeps resume simple: a running SHA-256 state would have to be
 * persisted with next_offset in a backend-specific form after every chunk,
 * while the read-back needs nothing but the slot. The port reads the slot
 * in small pieces (ESP32: esp_partition_read into a stack buffer, POSIX:
 * the slot file mapped read-only), so no image-sized buffer exists.
 */
#ifndef USMP_OTA_H
#define USMP_OTA_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_options.h"

#if USMP_OTA

#include "usmp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- wire constants (spec/ota.md) ----------------------------------------- */
#define USMP_OTA_MANIFEST_BYTES    124u
#define USMP_OTA_SIGNED_BYTES      60u /* manifest[0:60], what the signature covers */
#define USMP_OTA_HARDWARE_ID_BYTES 16u
#define USMP_OTA_PUBLIC_KEY_BYTES  32u
#define USMP_OTA_DIGEST_BYTES      32u
#define USMP_OTA_STATUS_BYTES      60u /* body, op included */
#define USMP_OTA_CHUNK_OVERHEAD    6u  /* channel, op, offset u32: plaintext = 6 + data */
/* Retransmission of a REQUEST (ota.md 5): first interval, doubled up to the
 * cap. A port may configure it lower (usmp_ota_config_t.retry_ms). */
#define USMP_OTA_RETRY_FIRST_MS 1000u
#define USMP_OTA_RETRY_MAX_MS   8000u

/* OTA ops (ota.md 3). */
enum {
    USMP_OTA_OP_STATUS = 0x01,
    USMP_OTA_OP_OFFER = 0x02,
    USMP_OTA_OP_REQUEST = 0x03,
    USMP_OTA_OP_CHUNK = 0x04,
    USMP_OTA_OP_RESULT = 0x05
};

/* RESULT codes (ota.md 3.5). */
typedef enum {
    USMP_OTA_ACTIVATED = 0x00,
    USMP_OTA_BAD_SIGNATURE = 0x01,
    USMP_OTA_WRONG_HARDWARE = 0x02,
    USMP_OTA_NOT_NEWER = 0x03,
    USMP_OTA_HASH_MISMATCH = 0x04,
    USMP_OTA_FLASH_ERROR = 0x05,
    USMP_OTA_TOO_LARGE = 0x06,
    USMP_OTA_MALFORMED = 0x07
} usmp_ota_result_t;

/*
 * What the platform provides: four calls on the inactive slot, the running
 * version, and the storage of one transfer's progress. Every call gets
 * `user`. Each returns 0 on success.
 */
typedef struct {
    void *user;

    /* 1. Prepare the inactive slot for an image of image_size bytes (at most
     * usmp_ota_config_t.slot_size). resume_offset 0: a new image, erase
     * what the slot holds. resume_offset > 0: bytes 0 .. resume_offset - 1
     * were written by an earlier session or boot and must stay; writing goes
     * on at resume_offset. Called again for each new transfer, and once per
     * boot before the first write of a resumed one. */
    int (*begin)(void *user, uint32_t image_size, uint32_t resume_offset);
    /* 2. Write len bytes at offset. Offsets only grow, each chunk following
     * the one before (a resumed transfer may write the last chunk again). */
    int (*write)(void *user, uint32_t offset, const uint8_t *data, size_t len);
    /* 3. Every byte is written: make the slot durable, then read its first
     * image_size bytes back and put their SHA-256 in digest (see "Why
     * finish() returns the slot's digest" above). */
    int (*finish)(void *user, uint8_t digest[USMP_OTA_DIGEST_BYTES]);
    /* 4. Make the slot the one the next boot runs (atomically: a power loss
     * leaves either the old or the new slot as the boot slot).
     * firmware_version is the manifest's, for a port that keeps the version
     * beside the slot rather than in the image. */
    int (*activate)(void *user, uint32_t firmware_version);

    /* The version of the running image (anti-rollback, ota.md 4.1 step 4). */
    uint32_t (*running_version)(void *user);

    /* Progress of the transfer in progress, for resume (ota.md 4.2).
     * save_progress stores the manifest and next_offset atomically (a power
     * loss keeps the old or the new record, never a mix); manifest NULL
     * clears it. load_progress returns 1 and fills both when a record
     * exists, 0 when none does. The module saves after every chunk, after
     * the write hook returned. */
    int (*save_progress)(void *user, const uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                         uint32_t next_offset);
    int (*load_progress)(void *user, uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                         uint32_t *next_offset);
} usmp_ota_flash_t;

typedef struct {
    /* The Ed25519 public key manifests must be signed with (compiled in or
     * read from protected storage). Required; there is no default key. */
    const uint8_t *public_key;
    /* This device's hardware id, zero-padded to 16 bytes (ota.md 2). */
    uint8_t hardware_id[USMP_OTA_HARDWARE_ID_BYTES];
    uint32_t slot_size;            /* the largest image the slot holds */
    const usmp_ota_flash_t *flash; /* must stay valid while attached */
    uint16_t max_chunk;            /* 0: own max_record - 6; else at most that */
    uint32_t retry_ms;             /* first REQUEST retry; 0: USMP_OTA_RETRY_FIRST_MS */
    /* One line per OTA step (offer checked, resumed, finished, activated,
     * refused), for the device's log; NULL: none. */
    void (*on_step)(void *user, const char *what, uint32_t value);
    void *on_step_user;
} usmp_ota_config_t;

/* Counters for diagnostics (ota.md 3.4, 3.6). */
typedef struct {
    uint32_t malformed;      /* OTA messages dropped: bad length, unknown op, wrong direction */
    uint32_t chunks_ignored; /* CHUNKs not asked for (late duplicates, wrong offset or length) */
    uint32_t chunks_written;
    uint32_t requests_resent;
    uint32_t send_failures; /* messages the session could not carry (peer's max_record) */
} usmp_ota_stats_t;

/* The module's state. Its fields are private; it is declared here for its
 * size, so that it can be static. */
typedef struct usmp_ota {
    usmp_ota_config_t cfg;
    usmp_ota_stats_t stats;
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES]; /* the transfer in progress */
    uint8_t manifest_digest[USMP_OTA_DIGEST_BYTES];
    uint32_t image_size, next_offset;
    uint32_t retry_at, retry_interval;
    uint16_t max_chunk, request_len;
    uint8_t receiving;   /* a transfer is in progress (persisted) */
    uint8_t begun;       /* begin() was called for it in this boot */
    uint8_t requesting;  /* a REQUEST is outstanding: its retry timer runs */
    uint8_t restart_due; /* ACTIVATED was sent: restart into the new image */
    uint8_t pending;     /* messages to send, in order: RESULT, STATUS, REQUEST */
    uint8_t result_code;
} usmp_ota_t;

/* Initialises ota from cfg (copied) and loads a persisted transfer: one
 * whose manifest no longer verifies, or whose version is not newer than
 * the running one, is cleared. Attaches it to ctx, whose session must have
 * been started by usmp_connect or usmp_connect_start (which clear the
 * context: attach again after each). When the session is established a
 * STATUS goes out with the next call that pumps the session; later
 * sessions (usmp_keepalive_tick's reconnects) send theirs as they open.
 * Errors: USMP_ERR_ARG (a NULL pointer, a missing hook, no public key, a
 * slot size of 0). */
int usmp_ota_attach(usmp_ctx_t *ctx, usmp_ota_t *ota, const usmp_ota_config_t *cfg);

/* 1 once RESULT ACTIVATED has been handed to the session: close it
 * (usmp_close) and restart into the new image. */
int usmp_ota_restart_due(const usmp_ota_t *ota);

const usmp_ota_stats_t *usmp_ota_stats(const usmp_ota_t *ota);

/* --- the sans-I/O core, which the device API drives ------------------------
 * Tests and other drivers may use these directly. Times are the port's
 * millisecond clock. */

/* Same as attach without a context. */
int usmp_ota_init(usmp_ota_t *ota, const usmp_ota_config_t *cfg);
/* A session opened whose own max_record is own_max_record: queue STATUS;
 * an outstanding REQUEST waits for the gateway's OFFER (ota.md 4.2). */
void usmp_ota_session_opened(usmp_ota_t *ota, uint16_t own_max_record);
/* One OTA message (a CONTROL body on channel 0x01). */
void usmp_ota_input(usmp_ota_t *ota, const uint8_t *body, size_t len, uint32_t now_ms);
/* Runs the REQUEST retry timer. */
void usmp_ota_tick(usmp_ota_t *ota, uint32_t now_ms);
/* The next message to send: writes its body (at most 64 bytes) into out and
 * returns its length, 0 when nothing is waiting. Call usmp_ota_sent once
 * the session took it. */
size_t usmp_ota_next_output(const usmp_ota_t *ota, uint8_t out[64]);
void usmp_ota_sent(usmp_ota_t *ota, uint32_t now_ms);
/* The earliest time usmp_ota_tick must run; 0 when no timer runs. */
int usmp_ota_next_deadline(const usmp_ota_t *ota, uint32_t *deadline_ms);

#ifdef __cplusplus
}
#endif

#endif /* USMP_OTA */

#endif /* USMP_OTA_H */
