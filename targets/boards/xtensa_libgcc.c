/*
 * xtensa_libgcc.c - the integer routines Debian's lx106 libgcc leaves out.
 *
 * Debian's gcc-xtensa-lx106 is built for the ESP8266, whose mask ROM
 * provides __divsi3, __udivsi3, __umodsi3, __muldi3, __umulsidi3, __udivdi3,
 * __umoddi3 and __divdi3; its libgcc.a therefore lacks them. The `sim` machine has no
 * such ROM, so this file supplies portable versions (shift-and-subtract
 * division, multiplication from 16-bit halves). They count as libgcc in
 * the footprint; on an ESP8266 they would cost no flash.
 */
#include <stddef.h>
#include <stdint.h>

unsigned int __udivsi3(unsigned int n, unsigned int d);
unsigned int __umodsi3(unsigned int n, unsigned int d);
int __divsi3(int n, int d);
long long __muldi3(long long a, long long b);
unsigned long long __umulsidi3(unsigned int a, unsigned int b);
unsigned long long __udivdi3(unsigned long long n, unsigned long long d);
unsigned long long __umoddi3(unsigned long long n, unsigned long long d);
long long __divdi3(long long n, long long d);
/* In Debian's libgcc.a. */
unsigned long long __udivmoddi4(unsigned long long n, unsigned long long d,
                                unsigned long long *rem);

/* Quotient and remainder of n / d (d != 0), one bit per step. */
static unsigned int udivmod32(unsigned int n, unsigned int d, unsigned int *rem)
{
    unsigned int q = 0;
    unsigned int r = 0;
    int bit;

    for (bit = 31; bit >= 0; bit--) {
        r = (r << 1) | ((n >> bit) & 1u);
        if (r >= d) {
            r -= d;
            q |= 1u << bit;
        }
    }
    *rem = r;
    return q;
}

unsigned int __udivsi3(unsigned int n, unsigned int d)
{
    unsigned int r;

    return udivmod32(n, d, &r);
}

unsigned int __umodsi3(unsigned int n, unsigned int d)
{
    unsigned int r;

    (void)udivmod32(n, d, &r);
    return r;
}

int __divsi3(int n, int d)
{
    unsigned int un = n < 0 ? 0u - (unsigned int)n : (unsigned int)n;
    unsigned int ud = d < 0 ? 0u - (unsigned int)d : (unsigned int)d;
    unsigned int r;
    unsigned int q = udivmod32(un, ud, &r);

    return (n < 0) != (d < 0) ? (int)(0u - q) : (int)q;
}

/* 32 x 32 -> 64 from four 16 x 16 -> 32 products (lx106 has no MULUH). */
static uint64_t mul32x32(uint32_t a, uint32_t b)
{
    uint32_t al = a & 0xFFFFu, ah = a >> 16;
    uint32_t bl = b & 0xFFFFu, bh = b >> 16;
    uint32_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    uint32_t lo = (ll & 0xFFFFu) | (mid << 16);
    uint32_t hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);

    return ((uint64_t)hi << 32) | lo;
}

unsigned long long __umulsidi3(unsigned int a, unsigned int b)
{
    return mul32x32(a, b);
}

long long __muldi3(long long a, long long b)
{
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    uint32_t al = (uint32_t)ua, ah = (uint32_t)(ua >> 32);
    uint32_t bl = (uint32_t)ub, bh = (uint32_t)(ub >> 32);
    uint64_t r = mul32x32(al, bl);

    r += (uint64_t)(ah * bl + al * bh) << 32;
    return (long long)r;
}

unsigned long long __udivdi3(unsigned long long n, unsigned long long d)
{
    return __udivmoddi4(n, d, NULL);
}

unsigned long long __umoddi3(unsigned long long n, unsigned long long d)
{
    unsigned long long r;

    (void)__udivmoddi4(n, d, &r);
    return r;
}

long long __divdi3(long long n, long long d)
{
    unsigned long long un = n < 0 ? 0u - (unsigned long long)n : (unsigned long long)n;
    unsigned long long ud = d < 0 ? 0u - (unsigned long long)d : (unsigned long long)d;
    unsigned long long q = __udivmoddi4(un, ud, NULL);

    return (n < 0) != (d < 0) ? (long long)(0u - q) : (long long)q;
}
