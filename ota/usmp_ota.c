/*
 * usmp_ota.c - the device's firmware-update module (usmp_ota.h,
 * spec/ota.md): the OTA channel's messages, the checks of an OFFER, the
 * transfer by REQUEST and CHUNK, resume, the final hash check and the
 * activation.
 */
#include "usmp_ota.h"

#include <string.h>

#include "usmp_crypto.h"
#include "usmp_wire.h"

/* Manifest field offsets (ota.md 2). */
#define MANIFEST_FORMAT      0u
#define MANIFEST_RESERVED    1u
#define MANIFEST_IMAGE_SIZE  4u
#define MANIFEST_VERSION     8u
#define MANIFEST_HARDWARE_ID 12u
#define MANIFEST_IMAGE_HASH  28u
#define MANIFEST_SIGNATURE   60u
#define MANIFEST_FORMAT_1    1u

/* The label the signature starts with (ota.md 2): 20 ASCII bytes. */
static const char SIGNATURE_LABEL[] = "usmp-v1 ota manifest";
#define SIGNATURE_LABEL_BYTES (sizeof SIGNATURE_LABEL - 1u)

/* Body lengths, op included (ota.md 3.6). */
#define OFFER_BYTES        (1u + USMP_OTA_MANIFEST_BYTES)
#define CHUNK_HEADER_BYTES 5u /* op, offset u32 */
#define REQUEST_BYTES      7u
#define RESULT_BYTES       6u

/* ota->pending, sent in this order (ota.md 4.3: RESULT, then STATUS) */
#define P_RESULT  0x01u
#define P_STATUS  0x02u
#define P_REQUEST 0x04u

/* STATUS state field (ota.md 3.1). */
#define STATE_IDLE      0u
#define STATE_RECEIVING 1u

static void step(const usmp_ota_t *ota, const char *what, uint32_t value)
{
    if (ota->cfg.on_step != NULL) {
        ota->cfg.on_step(ota->cfg.on_step_user, what, value);
    }
}

static uint32_t running_version(const usmp_ota_t *ota)
{
    return ota->cfg.flash->running_version(ota->cfg.flash->user);
}

static uint32_t manifest_u32(const uint8_t *manifest, size_t at)
{
    return (uint32_t)usmp_get_be(manifest + at, 4);
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

/* ota.md 2: the manifest digest names a transfer. */
static void manifest_digest(uint8_t digest[USMP_OTA_DIGEST_BYTES], const uint8_t *manifest)
{
    usmp_slice_t part = { manifest, USMP_OTA_MANIFEST_BYTES };
    if (usmp_crypto_sha256(digest, &part, 1) != USMP_CRYPTO_OK) {
        memset(digest, 0, USMP_OTA_DIGEST_BYTES); /* cannot match a real one */
    }
}

/*
 * The checks of ota.md 4.1 steps 2-6, in their order: the signature first,
 * because every other field is the sender's until it verifies. Returns -1
 * when the manifest is acceptable, else the RESULT code.
 */
static int check_manifest(const usmp_ota_t *ota, const uint8_t *manifest)
{
    uint8_t signed_message[SIGNATURE_LABEL_BYTES + USMP_OTA_SIGNED_BYTES];
    const uint8_t *hardware_id = manifest + MANIFEST_HARDWARE_ID;
    uint32_t image_size = manifest_u32(manifest, MANIFEST_IMAGE_SIZE);

    memcpy(signed_message, SIGNATURE_LABEL, SIGNATURE_LABEL_BYTES);
    memcpy(signed_message + SIGNATURE_LABEL_BYTES, manifest, USMP_OTA_SIGNED_BYTES);
    /* Any failure, UNSUPPORTED (a backend without Ed25519) included, is a
     * refusal: an image is never accepted unverified. */
    if (usmp_crypto_ed25519_verify(ota->cfg.public_key, signed_message, sizeof signed_message,
                                   manifest + MANIFEST_SIGNATURE) != USMP_CRYPTO_OK) {
        return USMP_OTA_BAD_SIGNATURE;
    }
    if (manifest[MANIFEST_FORMAT] != MANIFEST_FORMAT_1 ||
        !all_zero(manifest + MANIFEST_RESERVED, 3) || image_size == 0) {
        return USMP_OTA_MALFORMED;
    }
    if (manifest_u32(manifest, MANIFEST_VERSION) <= running_version(ota)) {
        return USMP_OTA_NOT_NEWER;
    }
    if (!all_zero(hardware_id, USMP_OTA_HARDWARE_ID_BYTES) &&
        memcmp(hardware_id, ota->cfg.hardware_id, USMP_OTA_HARDWARE_ID_BYTES) != 0) {
        return USMP_OTA_WRONG_HARDWARE;
    }
    if (image_size > ota->cfg.slot_size) {
        return USMP_OTA_TOO_LARGE;
    }
    return -1;
}

/* Ends the transfer in progress (after a failure, or once activated): the
 * persisted record goes, the slot stays as it is and is never activated. */
static void forget_transfer(usmp_ota_t *ota)
{
    ota->receiving = 0;
    ota->begun = 0;
    ota->requesting = 0;
    ota->pending &= (uint8_t)~P_REQUEST;
    ota->next_offset = 0;
    ota->image_size = 0;
    memset(ota->manifest, 0, sizeof ota->manifest);
    memset(ota->manifest_digest, 0, sizeof ota->manifest_digest);
    (void)ota->cfg.flash->save_progress(ota->cfg.flash->user, NULL, 0);
}

/* RESULT, then STATUS (ota.md 3.1: STATUS after every RESULT). */
static void answer(usmp_ota_t *ota, usmp_ota_result_t code)
{
    ota->result_code = (uint8_t)code;
    ota->pending |= P_RESULT | P_STATUS;
    step(ota, code == USMP_OTA_ACTIVATED ? "activated" : "refused, code", (uint32_t)code);
}

static void fail_transfer(usmp_ota_t *ota, usmp_ota_result_t code)
{
    forget_transfer(ota);
    answer(ota, code);
}

/* Queues the REQUEST for next_offset (ota.md 3.3). */
static void request_next(usmp_ota_t *ota)
{
    uint32_t left = ota->image_size - ota->next_offset;
    ota->request_len = (uint16_t)(left < ota->max_chunk ? left : ota->max_chunk);
    ota->pending |= P_REQUEST;
    ota->requesting = 1;
    ota->retry_interval = ota->cfg.retry_ms != 0 ? ota->cfg.retry_ms : USMP_OTA_RETRY_FIRST_MS;
}

/* Calls begin() once per boot for the transfer in progress. */
static int ensure_begun(usmp_ota_t *ota)
{
    if (!ota->begun) {
        if (ota->cfg.flash->begin(ota->cfg.flash->user, ota->image_size, ota->next_offset) != 0) {
            return -1;
        }
        ota->begun = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ OFFER */

static void on_offer(usmp_ota_t *ota, const uint8_t *manifest)
{
    uint8_t digest[USMP_OTA_DIGEST_BYTES];
    int refusal;

    manifest_digest(digest, manifest);
    /* Step 1: the transfer in progress, offered again (a duplicate, or the
     * gateway's OFFER after a resume): ask from where it stands. */
    if (ota->receiving && memcmp(digest, ota->manifest_digest, sizeof digest) == 0) {
        if (ensure_begun(ota) != 0) {
            fail_transfer(ota, USMP_OTA_FLASH_ERROR);
            return;
        }
        if (ota->next_offset < ota->image_size) {
            /* A REQUEST already outstanding: the gateway's resent OFFER
             * crossed it, or our REQUEST was lost (ota.md 3.2). */
            step(ota, ota->requesting ? "offer repeated, requesting offset" : "resuming at offset",
                 ota->next_offset);
            request_next(ota);
        }
        return;
    }
    refusal = check_manifest(ota, manifest);
    if (refusal >= 0) {
        /* A refused OFFER leaves a transfer in progress as it was (4.1). */
        answer(ota, (usmp_ota_result_t)refusal);
        return;
    }
    /* Every check passed: only now is anything erased or persisted. A new
     * transfer replaces one in progress, which is never activated. */
    memcpy(ota->manifest, manifest, USMP_OTA_MANIFEST_BYTES);
    memcpy(ota->manifest_digest, digest, sizeof digest);
    ota->image_size = manifest_u32(manifest, MANIFEST_IMAGE_SIZE);
    ota->next_offset = 0;
    ota->receiving = 1;
    ota->begun = 0;
    if (ensure_begun(ota) != 0 ||
        ota->cfg.flash->save_progress(ota->cfg.flash->user, ota->manifest, 0) != 0) {
        fail_transfer(ota, USMP_OTA_FLASH_ERROR);
        return;
    }
    step(ota, "offer accepted, image bytes", ota->image_size);
    request_next(ota);
}

/* ------------------------------------------------------------------ CHUNK */

/* ota.md 4.3: hash what the slot holds, then switch the boot slot. */
static void finish_transfer(usmp_ota_t *ota)
{
    uint8_t digest[USMP_OTA_DIGEST_BYTES];

    ota->requesting = 0;
    ota->pending &= (uint8_t)~P_REQUEST;
    if (ota->cfg.flash->finish(ota->cfg.flash->user, digest) != 0) {
        fail_transfer(ota, USMP_OTA_FLASH_ERROR);
        return;
    }
    if (!usmp_crypto_equal(digest, ota->manifest + MANIFEST_IMAGE_HASH, sizeof digest)) {
        fail_transfer(ota, USMP_OTA_HASH_MISMATCH);
        return;
    }
    step(ota, "image verified, version", manifest_u32(ota->manifest, MANIFEST_VERSION));
    if (ota->cfg.flash->activate(ota->cfg.flash->user,
                                 manifest_u32(ota->manifest, MANIFEST_VERSION)) != 0) {
        fail_transfer(ota, USMP_OTA_FLASH_ERROR);
        return;
    }
    forget_transfer(ota);
    answer(ota, USMP_OTA_ACTIVATED);
}

static void on_chunk(usmp_ota_t *ota, const uint8_t *body, size_t len)
{
    uint32_t offset = (uint32_t)usmp_get_be(body + 1, 4);
    const uint8_t *data = body + CHUNK_HEADER_BYTES;
    size_t data_len = len - CHUNK_HEADER_BYTES;

    /* ota.md 3.4: only the chunk asked for, with the length asked for;
     * anything else is a late duplicate (or a confused gateway). */
    if (!ota->requesting || offset != ota->next_offset || data_len != ota->request_len) {
        ota->stats.chunks_ignored++;
        return;
    }
    if (ota->cfg.flash->write(ota->cfg.flash->user, offset, data, data_len) != 0) {
        fail_transfer(ota, USMP_OTA_FLASH_ERROR);
        return;
    }
    ota->stats.chunks_written++;
    ota->next_offset = offset + (uint32_t)data_len;
    /* Written first, persisted second: the persisted offset never passes a
     * byte that is not in the slot (ota.md 4.2). */
    if (ota->cfg.flash->save_progress(ota->cfg.flash->user, ota->manifest, ota->next_offset) != 0) {
        fail_transfer(ota, USMP_OTA_FLASH_ERROR);
        return;
    }
    if (ota->next_offset == ota->image_size) {
        finish_transfer(ota);
    } else {
        request_next(ota);
    }
}

/* ------------------------------------------------------------------ input */

void usmp_ota_input(usmp_ota_t *ota, const uint8_t *body, size_t len, uint32_t now_ms)
{
    (void)now_ms;
    if (ota == NULL || (body == NULL && len > 0)) {
        return;
    }
    if (ota->restart_due) {
        return; /* activated: nothing more until the restart */
    }
    /* ota.md 3.6: a wrong length or an unknown op is dropped and counted;
     * so is a device-to-gateway op arriving here. */
    if (len == 1u + USMP_OTA_MANIFEST_BYTES && body[0] == USMP_OTA_OP_OFFER) {
        on_offer(ota, body + 1);
    } else if (len > CHUNK_HEADER_BYTES && body[0] == USMP_OTA_OP_CHUNK) {
        on_chunk(ota, body, len);
    } else {
        ota->stats.malformed++;
    }
}

void usmp_ota_tick(usmp_ota_t *ota, uint32_t now_ms)
{
    uint32_t cap;

    if (ota == NULL || !ota->requesting || (ota->pending & P_REQUEST) ||
        !usmp_time_reached(now_ms, ota->retry_at)) {
        return;
    }
    /* ota.md 3.3, 5: the same REQUEST again, the interval doubling. */
    cap = ota->cfg.retry_ms != 0 && ota->cfg.retry_ms * 8u < USMP_OTA_RETRY_MAX_MS
              ? ota->cfg.retry_ms * 8u
              : USMP_OTA_RETRY_MAX_MS;
    ota->retry_interval = ota->retry_interval * 2u < cap ? ota->retry_interval * 2u : cap;
    ota->pending |= P_REQUEST;
    ota->stats.requests_resent++;
}

int usmp_ota_next_deadline(const usmp_ota_t *ota, uint32_t *deadline_ms)
{
    if (ota == NULL || deadline_ms == NULL || !ota->requesting || (ota->pending & P_REQUEST)) {
        return 0;
    }
    *deadline_ms = ota->retry_at;
    return 1;
}

/* ----------------------------------------------------------------- output */

size_t usmp_ota_next_output(const usmp_ota_t *ota, uint8_t out[64])
{
    if (ota == NULL || out == NULL) {
        return 0;
    }
    if (ota->pending & P_RESULT) {
        out[0] = USMP_OTA_OP_RESULT;
        out[1] = ota->result_code;
        usmp_put_be(out + 2, running_version(ota), 4);
        return RESULT_BYTES;
    }
    if (ota->pending & P_STATUS) {
        /* ota.md 3.1: 60 bytes, op included. */
        out[0] = USMP_OTA_OP_STATUS;
        usmp_put_be(out + 1, running_version(ota), 4);
        memcpy(out + 5, ota->cfg.hardware_id, USMP_OTA_HARDWARE_ID_BYTES);
        out[21] = ota->receiving ? STATE_RECEIVING : STATE_IDLE;
        memcpy(out + 22, ota->manifest_digest, USMP_OTA_DIGEST_BYTES); /* zeros when idle */
        usmp_put_be(out + 54, ota->next_offset, 4);
        usmp_put_u16(out + 58, ota->max_chunk);
        return USMP_OTA_STATUS_BYTES;
    }
    if (ota->pending & P_REQUEST) {
        out[0] = USMP_OTA_OP_REQUEST;
        usmp_put_be(out + 1, ota->next_offset, 4);
        usmp_put_u16(out + 5, ota->request_len);
        return REQUEST_BYTES;
    }
    return 0;
}

void usmp_ota_sent(usmp_ota_t *ota, uint32_t now_ms)
{
    if (ota == NULL) {
        return;
    }
    if (ota->pending & P_RESULT) {
        ota->pending &= (uint8_t)~P_RESULT;
        if (ota->result_code == USMP_OTA_ACTIVATED) {
            ota->restart_due = 1;
        }
    } else if (ota->pending & P_STATUS) {
        ota->pending &= (uint8_t)~P_STATUS;
    } else if (ota->pending & P_REQUEST) {
        ota->pending &= (uint8_t)~P_REQUEST;
        ota->retry_at = now_ms + ota->retry_interval;
    }
}

/* ------------------------------------------------------------- lifecycle */

void usmp_ota_session_opened(usmp_ota_t *ota, uint16_t own_max_record)
{
    uint16_t limit;

    if (ota == NULL) {
        return;
    }
    /* ota.md 4.2: a CHUNK (6 + data bytes of plaintext) fits one record
     * this side accepts. */
    limit = (uint16_t)(own_max_record - USMP_OTA_CHUNK_OVERHEAD);
    ota->max_chunk =
        ota->cfg.max_chunk != 0 && ota->cfg.max_chunk < limit ? ota->cfg.max_chunk : limit;
    /* The gateway learns where the transfer stands from STATUS and offers
     * the manifest again; the REQUEST waits for that OFFER. */
    ota->requesting = 0;
    ota->pending = (uint8_t)((ota->pending & P_RESULT) | P_STATUS); /* an unsent RESULT too */
}

int usmp_ota_init(usmp_ota_t *ota, const usmp_ota_config_t *cfg)
{
    const usmp_ota_flash_t *f;
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES];
    uint32_t next_offset = 0;

    if (ota == NULL || cfg == NULL || cfg->public_key == NULL || cfg->flash == NULL ||
        cfg->slot_size == 0) {
        return USMP_ERR_ARG;
    }
    f = cfg->flash;
    if (f->begin == NULL || f->write == NULL || f->finish == NULL || f->activate == NULL ||
        f->running_version == NULL || f->save_progress == NULL || f->load_progress == NULL) {
        return USMP_ERR_ARG;
    }
    memset(ota, 0, sizeof *ota);
    ota->cfg = *cfg;
    ota->max_chunk = (uint16_t)(USMP_MIN_RECORD - USMP_OTA_CHUNK_OVERHEAD);
    if (f->load_progress(f->user, manifest, &next_offset) == 1) {
        /* The record was written after the manifest passed every check;
         * checked again, so a record from storage that changed, or one for
         * a version that is no longer newer, is dropped, not resumed. */
        if (check_manifest(ota, manifest) < 0 &&
            next_offset < manifest_u32(manifest, MANIFEST_IMAGE_SIZE)) {
            memcpy(ota->manifest, manifest, sizeof manifest);
            manifest_digest(ota->manifest_digest, manifest);
            ota->image_size = manifest_u32(manifest, MANIFEST_IMAGE_SIZE);
            ota->next_offset = next_offset;
            ota->receiving = 1;
            step(ota, "transfer in progress at offset", next_offset);
        } else {
            forget_transfer(ota);
            step(ota, "persisted transfer dropped", next_offset);
        }
    }
    return USMP_OK;
}

int usmp_ota_attach(usmp_ctx_t *ctx, usmp_ota_t *ota, const usmp_ota_config_t *cfg)
{
    int rc;

    if (ctx == NULL) {
        return USMP_ERR_ARG;
    }
    rc = usmp_ota_init(ota, cfg);
    if (rc != USMP_OK) {
        return rc;
    }
    ctx->ota = ota;
    if (usmp_engine_state(&ctx->engine) == USMP_STATE_ESTABLISHED) {
        /* The session opened before the module was attached. */
        usmp_ota_session_opened(ota, ctx->engine.max_record);
    }
    return USMP_OK;
}

int usmp_ota_restart_due(const usmp_ota_t *ota)
{
    return ota != NULL && ota->restart_due;
}

const usmp_ota_stats_t *usmp_ota_stats(const usmp_ota_t *ota)
{
    return ota != NULL ? &ota->stats : NULL;
}
