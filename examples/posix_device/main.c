/*
 * main.c - a simulated device: the ESP32 example's application
 * (examples/common/echo_app.c) on the POSIX port, over TCP (default), UDP
 * or a serial line; the application is the same, only the transport's init
 * call differs.
 *
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --port 9000 "hello" "temp=21.5"
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --udp 127.0.0.1:9000 "hello"
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --serial /dev/ttyUSB0 --baud 115200 "hello"
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --discover "hello"
 *
 * Without any of --host, --port, --udp and --serial, or with --discover
 * (--discover-udp), the gateway is found on mDNS (_usmp._tcp, _usmp._udp)
 * through avahi-daemon when the build has libavahi-client
 * (ports/posix/usmp_discovery_posix.h); a build without it connects to
 * 127.0.0.1:9000 as before, and refuses --discover.
 *
 * With --ota-dir it is an updatable device instead (docs/ota.md): it keeps
 * its session open (reconnecting when it drops), runs the OTA module on
 * the files of the state directory, prints one line per OTA step on
 * stderr, and after an activated update re-executes itself, so that the
 * new session's STATUS reports the new version:
 *
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --ota-dir state \
 *       --ota-pubkey <64 hex digits> --hardware-id usmp-posix --fw-version 7
 *
 * Exit status: 0 when every message came back, 1 on a protocol or network
 * failure, 2 for a usage or configuration error, 3 when the re-execution
 * after an activated update failed (run the program again: it starts the
 * new version). An updatable device runs until it is stopped.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo_app.h"
#include "psk_file.h"
#include "usmp.h"
#include "usmp_discovery_posix.h"
#include "usmp_ota.h"
#include "usmp_ota_posix.h"
#include "usmp_port_posix.h"

/* The slot size of the simulated device: the largest image it accepts. */
#define OTA_SLOT_BYTES (16u * 1024u * 1024u)

/* How long --discover browses before it gives up: an mDNS responder answers
 * a query within about 120 ms (RFC 6762 6), a second query follows after
 * one second; five seconds leaves room for a slow LAN. */
#define DISCOVERY_TIMEOUT_MS 5000u

static void report(void *user, const char *line)
{
    (void)user;
    printf("device: %s\n", line);
    fflush(stdout);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: usmp_device (--psk-env VAR | --psk-file FILE) [options] [message ...]\n"
                 "\n"
                 "A simulated USMP device: connects, sends each message, checks the echo.\n"
                 "\n"
                 "  --psk-env VAR        the device's PSK (hex) from environment variable VAR\n"
                 "  --psk-file FILE      the device's line in a gateway PSK file\n"
                 "  --device-id HEX      12 hex digits (default: $USMP_DEVICE_ID or 020000000001)\n"
                 "  --host HOST          TCP gateway (default 127.0.0.1)\n"
                 "  --port N             TCP gateway port (default 9000)\n"
                 "  --udp HOST:PORT      UDP gateway instead of TCP (datagram mode)\n"
                 "  --serial PATH        serial line instead of TCP (COBS frames, datagram mode)\n"
                 "  --discover           find the TCP gateway on mDNS (_usmp._tcp, avahi-daemon);\n"
                 "                       the default when no address option is given and the\n"
                 "                       build has avahi\n"
                 "  --discover-udp       find the UDP gateway on mDNS (_usmp._udp, datagram mode)\n"
                 "  --baud N             serial line speed (default 115200)\n"
                 "  --keepalive-ms N     PING after N ms idle (default 5000)\n"
                 "  --timeout-ms N       wait for each echo (default 3000)\n"
                 "  --verbose            show the library's own log lines (usmp_port_log)\n"
#if USMP_OTA
                 "\n"
                 "Firmware updates (docs/ota.md); all four make the device updatable:\n"
                 "  --ota-dir DIR        state directory: two slots, boot and progress records\n"
                 "  --ota-pubkey HEX     the Ed25519 public key images must be signed with\n"
                 "  --hardware-id H      this device's hardware id (at most 16 bytes)\n"
                 "  --fw-version N       the running version while no update was activated\n"
                 "  --ota-retry-ms N     first REQUEST retry (default 1000; doubles to 8x)\n"
#endif
                 "  --help\n");
}

/* What the command line says. */
typedef struct {
    const char *host, *psk_env, *psk_file, *serial;
    char udp_host[256];
    int udp, verbose, discover, address_given;
    unsigned long port, baud, keepalive, timeout;
    uint8_t device_id[6];
    /* --ota-*: an updatable device (docs/ota.md) */
    const char *ota_dir, *ota_pubkey, *hardware_id;
    unsigned long fw_version, ota_retry;
    int fw_version_set;
    const char *const *messages;
    size_t message_count;
} options_t;

/* Splits "HOST:PORT" of --udp. Returns 0, or -1 with a message. */
static int parse_udp(options_t *o, const char *v, char **end)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || (size_t)(colon - v) >= sizeof o->udp_host) {
        fprintf(stderr, "usmp_device: --udp wants HOST:PORT, not '%s'\n", v);
        return -1;
    }
    memcpy(o->udp_host, v, (size_t)(colon - v));
    o->udp_host[colon - v] = '\0';
    o->host = o->udp_host;
    o->udp = 1;
    o->port = strtoul(colon + 1, end, 10);
    return 0;
}

/* Reads one option and its value. Returns 0, or the exit status 2. */
static int parse_option(options_t *o, const char *a, const char *v)
{
    char *end = NULL;
    if (strcmp(a, "--psk-env") == 0) {
        o->psk_env = v;
    } else if (strcmp(a, "--psk-file") == 0) {
        o->psk_file = v;
    } else if (strcmp(a, "--host") == 0) {
        o->host = v;
        o->address_given = 1;
    } else if (strcmp(a, "--device-id") == 0) {
        if (usmp_posix_parse_device_id(v, o->device_id) != 0) {
            fprintf(stderr, "usmp_device: --device-id wants 12 hex digits, not '%s'\n", v);
            return 2;
        }
    } else if (strcmp(a, "--port") == 0) {
        o->port = strtoul(v, &end, 10);
        o->address_given = 1;
    } else if (strcmp(a, "--udp") == 0) {
        if (parse_udp(o, v, &end) != 0) {
            return 2;
        }
        o->address_given = 1;
    } else if (strcmp(a, "--serial") == 0) {
        o->serial = v;
        o->address_given = 1;
    } else if (strcmp(a, "--baud") == 0) {
        o->baud = strtoul(v, &end, 10);
    } else if (strcmp(a, "--keepalive-ms") == 0) {
        o->keepalive = strtoul(v, &end, 10);
    } else if (strcmp(a, "--timeout-ms") == 0) {
        o->timeout = strtoul(v, &end, 10);
#if USMP_OTA
    } else if (strcmp(a, "--ota-dir") == 0) {
        o->ota_dir = v;
    } else if (strcmp(a, "--ota-pubkey") == 0) {
        o->ota_pubkey = v;
    } else if (strcmp(a, "--hardware-id") == 0) {
        o->hardware_id = v;
    } else if (strcmp(a, "--fw-version") == 0) {
        o->fw_version = strtoul(v, &end, 10);
        o->fw_version_set = 1;
        if (*v == '-' || o->fw_version > 0xFFFFFFFFul) {
            fprintf(stderr, "usmp_device: --fw-version wants 0 .. 4294967295, not '%s'\n", v);
            return 2;
        }
    } else if (strcmp(a, "--ota-retry-ms") == 0) {
        o->ota_retry = strtoul(v, &end, 10);
        if (o->ota_retry == 0) {
            fprintf(stderr, "usmp_device: --ota-retry-ms must be positive\n");
            return 2;
        }
#endif
    } else {
        fprintf(stderr, "usmp_device: unknown option %s\n", a);
        usage(stderr);
        return 2;
    }
    if (end != NULL && (*end != '\0' || o->port == 0 || o->port > 65535 || o->timeout > 3600000ul ||
                        o->keepalive > 3600000ul || o->baud == 0 || o->baud > 4000000ul)) {
        fprintf(stderr, "usmp_device: bad value for %s: %s\n", a, v);
        return 2;
    }
    return 0;
}

/* Reads the command line. Returns -1 to go on, else the exit status (0
 * after --help, 2 for a usage error). */
static int parse_options(int argc, char **argv, options_t *o)
{
    int i, rc;
    for (i = 1; i < argc; i += 2) { /* options take one value, flags none */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
            i--; /* a flag: no value to skip */
            continue;
        }
        if (strcmp(a, "--discover") == 0 || strcmp(a, "--discover-udp") == 0) {
            o->discover = 1;
            o->udp = strcmp(a, "--discover-udp") == 0;
            i--; /* a flag: no value to skip */
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            o->messages = (const char *const *)&argv[i];
            o->message_count = (size_t)(argc - i);
            break;
        }
        if (v == NULL) {
            fprintf(stderr, "usmp_device: %s needs a value\n", a);
            return 2;
        }
        if ((rc = parse_option(o, a, v)) != 0) {
            return rc;
        }
    }
    if (o->discover && !usmp_posix_discovery_available()) {
        fprintf(stderr, "usmp_device: --discover needs mDNS discovery, and this build has none "
                        "(configured without libavahi-client, or with -DUSMP_AVAHI=OFF)\n");
        return 2;
    }
    if (o->discover && o->address_given) {
        fprintf(stderr, "usmp_device: --discover finds the address: give no --host, --port, --udp "
                        "or --serial with it\n");
        return 2;
    }
    if (o->udp && o->serial != NULL) {
        fprintf(stderr, "usmp_device: give at most one of --udp and --serial\n");
        return 2;
    }
    if ((o->ota_dir != NULL || o->ota_pubkey != NULL || o->hardware_id != NULL ||
         o->fw_version_set) &&
        (o->ota_dir == NULL || o->ota_pubkey == NULL || o->hardware_id == NULL ||
         !o->fw_version_set)) {
        fprintf(stderr, "usmp_device: --ota-dir, --ota-pubkey, --hardware-id and --fw-version go "
                        "together; there is no default OTA key\n");
        return 2;
    }
    if ((o->psk_env == NULL) == (o->psk_file == NULL)) {
        fprintf(
            stderr,
            "usmp_device: give exactly one of --psk-env and --psk-file; there is no default PSK\n");
        return 2;
    }
    return -1;
}

/* The one call that differs between transports. Returns 0, or the exit
 * status 2. */
static int init_transport(usmp_transport_t *transport, const options_t *o)
{
#if USMP_DATAGRAM
    if ((o->serial != NULL ? usmp_uart_transport_init(transport, o->serial, (uint32_t)o->baud)
         : o->udp          ? usmp_udp_transport_init(transport, o->host, (uint16_t)o->port)
                  : usmp_tcp_transport_init(transport, o->host, (uint16_t)o->port)) != USMP_OK) {
#else
    if (o->udp || o->serial != NULL) {
        fprintf(
            stderr,
            "usmp_device: --udp and --serial need datagram mode; this build has USMP_DATAGRAM=0\n");
        return 2;
    }
    if (usmp_tcp_transport_init(transport, o->host, (uint16_t)o->port) != USMP_OK) {
#endif
        fprintf(stderr, "usmp_device: bad gateway address\n");
        return 2;
    }
    return 0;
}

/* Fills o->host and o->port from mDNS when asked to, or when no address was
 * given and this build can. Returns 0, or the exit status 1 (nothing found:
 * a network condition, like a gateway that does not answer). */
static int discover(options_t *o, usmp_posix_gateway_t *found)
{
    char err[256];
    if (!o->discover && (o->address_given || !usmp_posix_discovery_available())) {
        return 0;
    }
    printf("device: looking for a gateway on mDNS (_usmp._%s)\n", o->udp ? "udp" : "tcp");
    fflush(stdout);
    if (usmp_posix_discover(o->udp ? "udp" : "tcp", DISCOVERY_TIMEOUT_MS, found, err, sizeof err) !=
        0) {
        fprintf(stderr, "usmp_device: %s\n", err);
        return 1;
    }
    printf("device: found %s at %s:%u\n", found->name, found->host, (unsigned)found->port);
    o->host = found->host;
    o->port = found->port;
    return 0;
}

static void say_where(const options_t *o)
{
    int i;
    if (o->serial != NULL) {
        printf("device: connecting over serial %s at %lu baud as device ", o->serial, o->baud);
    } else {
        printf("device: connecting to %s%s:%lu as device ", o->udp ? "udp://" : "", o->host,
               o->port);
    }
    for (i = 0; i < 6; i++) {
        printf("%02x", o->device_id[i]);
    }
    printf("\n");
    fflush(stdout);
}

#if USMP_OTA
/* --- an updatable device ------------------------------------------------ */

static void ota_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ota_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ota: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
}

/* One line per OTA step (usmp_ota_config_t.on_step). */
static void ota_step(void *user, const char *what, uint32_t value)
{
    (void)user;
    ota_say("%s %lu", what, (unsigned long)value);
}

/* The OTA configuration from the command line. Returns 0, or the exit
 * status 2. */
static int ota_configure(const options_t *o, usmp_ota_posix_t *files, usmp_ota_config_t *oc,
                         uint8_t public_key[USMP_OTA_PUBLIC_KEY_BYTES])
{
    size_t id_len = strlen(o->hardware_id);

    if (usmp_posix_parse_hex(o->ota_pubkey, strlen(o->ota_pubkey), public_key,
                             USMP_OTA_PUBLIC_KEY_BYTES) != (int)USMP_OTA_PUBLIC_KEY_BYTES) {
        fprintf(stderr, "usmp_device: --ota-pubkey wants 64 hex digits\n");
        return 2;
    }
    if (id_len > USMP_OTA_HARDWARE_ID_BYTES) {
        fprintf(stderr, "usmp_device: --hardware-id is at most %u bytes\n",
                (unsigned)USMP_OTA_HARDWARE_ID_BYTES);
        return 2;
    }
    if (usmp_ota_posix_open(files, o->ota_dir, (uint32_t)o->fw_version) != 0) {
        perror("usmp_device: --ota-dir");
        return 2;
    }
    memset(oc, 0, sizeof *oc);
    oc->public_key = public_key;
    memcpy(oc->hardware_id, o->hardware_id, id_len); /* zero-padded (ota.md 2) */
    oc->slot_size = OTA_SLOT_BYTES;
    oc->flash = &files->hooks;
    oc->retry_ms = (uint32_t)o->ota_retry;
    oc->on_step = ota_step;
    return 0;
}

/*
 * Serves the session until an update is activated: messages from the
 * gateway are printed, a lost session is reconnected (usmp_keepalive_tick),
 * the OTA module runs inside both calls. Then closes the session and
 * re-executes the program, which starts the new version.
 */
static int run_updatable(usmp_ctx_t *ctx, usmp_transport_t *transport, const usmp_config_t *cfg,
                         const options_t *o, char **argv)
{
    static usmp_ota_t ota;
    static usmp_ota_posix_t files;
    static uint8_t buf[USMP_MAX_MESSAGE];
    uint8_t public_key[USMP_OTA_PUBLIC_KEY_BYTES];
    usmp_ota_config_t oc;
    int rc;

    if (ota_configure(o, &files, &oc, public_key) != 0) {
        return 2;
    }
    ota_say("running version %lu from slot %c of %s", (unsigned long)files.running_version,
            files.running_slot, o->ota_dir);
    rc = usmp_connect(ctx, transport, cfg); /* a failure: keepalive_tick retries */
    if (usmp_ota_attach(ctx, &ota, &oc) != USMP_OK) {
        fprintf(stderr, "usmp_device: bad OTA configuration\n");
        return 2;
    }
    if (rc == USMP_OK) {
        ota_say("session open, version %lu", (unsigned long)files.running_version);
    }
    while (!usmp_ota_restart_due(&ota)) {
        int n;
        if (usmp_state(ctx) != USMP_STATE_ESTABLISHED) {
            rc = usmp_keepalive_tick(ctx);
            if (rc == USMP_OK) {
                ota_say("session open, version %lu", (unsigned long)files.running_version);
            } else {
                usmp_port_delay_ms(20);
            }
            continue;
        }
        n = usmp_recv(ctx, buf, sizeof buf, 200);
        if (n > 0) {
            printf("device: message of %d bytes from the gateway\n", n);
            fflush(stdout);
        } else if (n < 0 && usmp_state(ctx) == USMP_STATE_ESTABLISHED) {
            (void)usmp_keepalive_tick(ctx);
        }
    }
    usmp_close(ctx);
    usmp_ota_posix_close(&files);
    ota_say("restarting into the new version");
    fflush(stdout);
    execv("/proc/self/exe", argv);
    execv(argv[0], argv);
    perror("usmp_device: re-executing after the update");
    return 3;
}
#endif

int main(int argc, char **argv)
{
    static const char *default_messages[] = { "hello from a USMP device", "temperature=21.5C", "" };
    static usmp_ctx_t ctx;
    static psk_table_t table;
    static options_t o;
    static usmp_posix_gateway_t found;
    usmp_transport_t transport;
    usmp_config_t cfg;
    echo_app_t app;
    char err[256];
    int rc;

    o.host = "127.0.0.1";
    o.port = 9000;
    o.baud = 115200;
    o.keepalive = 5000;
    o.timeout = 3000;
    o.messages = default_messages;
    o.message_count = 3;
    usmp_port_get_device_id(o.device_id);
    if ((rc = parse_options(argc, argv, &o)) >= 0) {
        return rc;
    }
    if ((o.psk_env != NULL ? psk_table_load_env(&table, o.psk_env, err, sizeof err)
                           : psk_table_load_file(&table, o.psk_file, err, sizeof err)) != 0) {
        fprintf(stderr, "usmp_device: %s\n", err);
        return 2;
    }
    usmp_posix_set_device_id(o.device_id);
    usmp_posix_set_log_enabled(o.verbose);

    memset(&cfg, 0, sizeof cfg);
    cfg.psk_len = psk_table_lookup(&table, o.device_id, table.entries[0].psk);
    cfg.psk = table.entries[0].psk;
    if (cfg.psk_len == 0) {
        fprintf(stderr, "usmp_device: %s has no line for this device id\n", o.psk_file);
        return 2;
    }
    cfg.keepalive_ms = (uint32_t)o.keepalive;
    if ((rc = discover(&o, &found)) != 0) {
        return rc;
    }
    if (init_transport(&transport, &o) != 0) {
        return 2;
    }
    memset(&app, 0, sizeof app);
    app.transport = &transport;
    app.config = &cfg;
    app.messages = o.messages;
    app.message_count = o.message_count;
    app.reply_timeout_ms = (uint32_t)o.timeout;
    app.report = report;
    say_where(&o);
#if USMP_OTA
    if (o.ota_dir != NULL) {
        return run_updatable(&ctx, &transport, &cfg, &o, argv);
    }
#endif
    return echo_app_run(&ctx, &app) == USMP_OK ? 0 : 1;
}
