/*
 * usmp_discovery_avahi.c - usmp_posix_discover through avahi-daemon
 * (libavahi-client): a service browser for _usmp._tcp or _usmp._udp, a
 * resolver for each service it reports, a simple poll loop that ends at the
 * first usable answer or at the timeout.
 *
 * Without USMP_HAVE_AVAHI (the library was not found, or -DUSMP_AVAHI=OFF),
 * the same two functions say that discovery is not available.
 */
#include "usmp_discovery_posix.h"

#include <stdio.h>
#include <string.h>

#if USMP_HAVE_AVAHI

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/address.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/simple-watch.h>
#include <avahi-common/strlst.h>
#include <avahi-common/timeval.h>

/* ===================================================================== */
/* One discovery run                                                      */
/* ===================================================================== */

typedef struct {
    AvahiSimplePoll *poll;
    AvahiClient *client;
    usmp_posix_gateway_t *out;
    int found;
    int failed;
    char *err;
    size_t err_len;
} discovery_t;

/* TXT "v" must be the protocol version this build speaks (spec 4). */
static int speaks_version_1(AvahiStringList *txt)
{
    AvahiStringList *item = avahi_string_list_find(txt, "v");
    char *key = NULL, *value = NULL;
    int ok;
    if (item == NULL || avahi_string_list_get_pair(item, &key, &value, NULL) != 0) {
        return 0;
    }
    ok = value != NULL && strcmp(value, "1") == 0;
    avahi_free(key);
    avahi_free(value);
    return ok;
}

static void on_resolved(AvahiServiceResolver *resolver, AvahiIfIndex interface,
                        AvahiProtocol protocol, AvahiResolverEvent event, const char *name,
                        const char *type, const char *domain, const char *host_name,
                        const AvahiAddress *address, uint16_t port, AvahiStringList *txt,
                        AvahiLookupResultFlags flags, void *userdata)
{
    discovery_t *d = userdata;
    (void)interface;
    (void)protocol;
    (void)type;
    (void)domain;
    (void)host_name;
    (void)flags;
    if (event == AVAHI_RESOLVER_FOUND && !d->found && address != NULL && port != 0 &&
        speaks_version_1(txt)) {
        avahi_address_snprint(d->out->host, sizeof d->out->host, address);
        d->out->port = port;
        snprintf(d->out->name, sizeof d->out->name, "%s", name != NULL ? name : "");
        d->found = 1;
        avahi_simple_poll_quit(d->poll);
    }
    avahi_service_resolver_free(resolver);
}

static void on_browse(AvahiServiceBrowser *browser, AvahiIfIndex interface, AvahiProtocol protocol,
                      AvahiBrowserEvent event, const char *name, const char *type,
                      const char *domain, AvahiLookupResultFlags flags, void *userdata)
{
    discovery_t *d = userdata;
    (void)browser;
    (void)flags;
    if (event == AVAHI_BROWSER_FAILURE) {
        snprintf(d->err, d->err_len, "mDNS browse failed: %s",
                 avahi_strerror(avahi_client_errno(d->client)));
        d->failed = 1;
        avahi_simple_poll_quit(d->poll);
    } else if (event == AVAHI_BROWSER_NEW && !d->found) {
        /* IPv4 only: the transports resolve dotted IPv4 hosts. A resolver
         * that cannot be created is skipped: the next service may do. */
        (void)avahi_service_resolver_new(d->client, interface, protocol, name, type, domain,
                                         AVAHI_PROTO_INET, 0, on_resolved, d);
    }
}

static void on_client(AvahiClient *client, AvahiClientState state, void *userdata)
{
    discovery_t *d = userdata;
    if (state == AVAHI_CLIENT_FAILURE) {
        snprintf(d->err, d->err_len, "avahi-daemon: %s",
                 avahi_strerror(avahi_client_errno(client)));
        d->failed = 1;
        avahi_simple_poll_quit(d->poll);
    }
}

static void on_timeout(AvahiTimeout *timeout, void *userdata)
{
    discovery_t *d = userdata;
    (void)timeout;
    avahi_simple_poll_quit(d->poll);
}

int usmp_posix_discovery_available(void)
{
    return 1;
}

int usmp_posix_discover(const char *transport, unsigned timeout_ms, usmp_posix_gateway_t *out,
                        char *err, size_t err_len)
{
    discovery_t d;
    const AvahiPoll *api;
    AvahiServiceBrowser *browser = NULL;
    struct timeval deadline;
    char type[16];
    int error = 0;

    if (strcmp(transport, "tcp") != 0 && strcmp(transport, "udp") != 0) {
        snprintf(err, err_len, "no such transport to discover: %s", transport);
        return -1;
    }
    snprintf(type, sizeof type, "_usmp._%s", transport);
    memset(&d, 0, sizeof d);
    memset(out, 0, sizeof *out);
    d.out = out;
    d.err = err;
    d.err_len = err_len;
    if ((d.poll = avahi_simple_poll_new()) == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    api = avahi_simple_poll_get(d.poll);
    d.client = avahi_client_new(api, 0, on_client, &d, &error);
    if (d.client == NULL) {
        snprintf(err, err_len, "cannot reach avahi-daemon: %s", avahi_strerror(error));
        avahi_simple_poll_free(d.poll);
        return -1;
    }
    browser = avahi_service_browser_new(d.client, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET, type, NULL, 0,
                                        on_browse, &d);
    if (browser == NULL) {
        snprintf(err, err_len, "mDNS browse failed: %s",
                 avahi_strerror(avahi_client_errno(d.client)));
        d.failed = 1;
    } else {
        api->timeout_new(api, avahi_elapse_time(&deadline, timeout_ms, 0), on_timeout, &d);
        /* Returns when a callback or the timeout quits it (or on a poll error). */
        (void)avahi_simple_poll_loop(d.poll);
        if (!d.found && !d.failed) {
            snprintf(err, err_len, "no gateway answered for %s within %u ms", type, timeout_ms);
        }
        avahi_service_browser_free(browser);
    }
    /* Frees the resolvers still pending and the timeout with the client. */
    avahi_client_free(d.client);
    avahi_simple_poll_free(d.poll);
    return d.found ? 0 : -1;
}

#else /* !USMP_HAVE_AVAHI */

int usmp_posix_discovery_available(void)
{
    return 0;
}

int usmp_posix_discover(const char *transport, unsigned timeout_ms, usmp_posix_gateway_t *out,
                        char *err, size_t err_len)
{
    (void)transport;
    (void)timeout_ms;
    (void)out;
    snprintf(err, err_len,
             "this build has no mDNS discovery (no libavahi-client, or -DUSMP_AVAHI=OFF)");
    return -1;
}

#endif /* USMP_HAVE_AVAHI */
