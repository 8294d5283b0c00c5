/*
 * usmp_uart_posix.c - a serial line on POSIX (termios): the platform half
 * of the UART transport (usmp_uart_line.h). Works on a real port
 * (/dev/ttyUSB0) and on a pseudo-terminal alike.
 */
#include "usmp_options.h"

/* Datagram transports: nothing to compile without datagram mode. */
#if USMP_DATAGRAM

#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
/* B230400 and up are not POSIX; Linux and the BSDs have them. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include "usmp_errors.h"
#include "usmp_uart_line.h"

static int speed_of(uint32_t baud, speed_t *speed)
{
    static const struct {
        uint32_t baud;
        speed_t speed;
    } speeds[] = {
        { 9600u, B9600 },     { 19200u, B19200 },   { 38400u, B38400 },
        { 57600u, B57600 },   { 115200u, B115200 },
#ifdef B230400
        { 230400u, B230400 },
#endif
#ifdef B460800
        { 460800u, B460800 },
#endif
#ifdef B921600
        { 921600u, B921600 },
#endif
    };
    size_t i;

    for (i = 0; i < sizeof speeds / sizeof speeds[0]; i++) {
        if (speeds[i].baud == baud) {
            *speed = speeds[i].speed;
            return 1;
        }
    }
    return 0;
}

static int wait_for(int fd, short events, uint32_t timeout_ms)
{
    struct pollfd p;
    int rc;

    p.fd = fd;
    p.events = events;
    p.revents = 0;
    do {
        rc = poll(&p, 1, timeout_ms > 0x7FFFFFFFu ? 0x7FFFFFFF : (int)timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc > 0 && (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & events)) {
        return -1;
    }
    return rc;
}

int usmp_uart_line_open(const char *path, uint32_t baud)
{
    struct termios tio;
    speed_t speed;
    int fd;

    if (!speed_of(baud, &speed)) {
        return USMP_ERR_ARG;
    }
    do {
        fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    if (tcgetattr(fd, &tio) != 0) {
        close(fd);
        return USMP_ERR_TRANSPORT;
    }
    /* Raw 8N1: no echo, no line editing, no signals, no CR/LF mapping, no
     * software flow control; every byte passes as it is (COBS frames are
     * binary). */
    tio.c_iflag &=
        (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    tio.c_oflag &= (tcflag_t)~OPOST;
    tio.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= (tcflag_t) ~(CSIZE | PARENB | CSTOPB);
    tio.c_cflag |= (tcflag_t)(CS8 | CLOCAL | CREAD);
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0 ||
        tcsetattr(fd, TCSANOW, &tio) != 0) {
        close(fd);
        return USMP_ERR_TRANSPORT;
    }
    (void)tcflush(fd, TCIFLUSH); /* what waited before this session */
    return fd;
}

void usmp_uart_line_close(int line)
{
    if (line >= 0) {
        close(line);
    }
}

int usmp_uart_line_read(int line, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    ssize_t n;
    int rc = wait_for(line, POLLIN, timeout_ms);

    if (rc == 0) {
        return 0;
    }
    if (rc < 0) {
        return USMP_ERR_TRANSPORT;
    }
    do {
        n = read(line, buf, cap);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    /* 0: the other end of a pty closed (EIO on Linux is the same). */
    return USMP_ERR_TRANSPORT;
}

int usmp_uart_line_write(int line, const uint8_t *data, size_t len, uint32_t timeout_ms)
{
    while (len > 0) {
        ssize_t n = write(line, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return USMP_ERR_TRANSPORT;
        }
        if (wait_for(line, POLLOUT, timeout_ms) <= 0) {
            return USMP_ERR_TIMEOUT;
        }
    }
    return USMP_OK;
}

int usmp_uart_line_pending(int line)
{
    int rc = wait_for(line, POLLIN, 0);
    return rc < 0 ? USMP_ERR_TRANSPORT : rc;
}

#else
typedef int usmp_no_datagram_transports; /* ISO C wants a declaration */
#endif /* USMP_DATAGRAM */
