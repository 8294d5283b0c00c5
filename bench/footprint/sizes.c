/*
 * sizes.c - the sizes the footprint benchmark reports, as the target
 * compiler lays the structs out: each array below has the size of one
 * struct or field, and the benchmark reads it back with nm -S from the
 * object file. Compiled, never run.
 */
#include <stddef.h>

#include "usmp.h"

#define FIELD_SIZE(type, field) sizeof(((type *)0)->field)

char size_usmp_ctx_t[sizeof(usmp_ctx_t)];
char size_usmp_engine_t[sizeof(usmp_engine_t)];
char size_ctx_rx_buf[FIELD_SIZE(usmp_ctx_t, rx_buf)];
char size_ctx_tx_buf[FIELD_SIZE(usmp_ctx_t, tx_buf)];
char size_ctx_in_buf[FIELD_SIZE(usmp_ctx_t, in_buf)];
char size_engine_hs[FIELD_SIZE(usmp_engine_t, hs)];
char size_usmp_transport_t[sizeof(usmp_transport_t)];
char size_usmp_config_t[sizeof(usmp_config_t)];
char size_usmp_stats_t[sizeof(usmp_stats_t)];
#if USMP_MAX_MESSAGE > USMP_MAX_RECORD
char size_ctx_reassembly_buf[FIELD_SIZE(usmp_ctx_t, reassembly_buf)];
#endif

/* The options in force, read back the same way. */
char size_option_max_record[USMP_MAX_RECORD];
char size_option_max_message[USMP_MAX_MESSAGE];
