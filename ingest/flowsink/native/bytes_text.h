/* Reading a datagram's bytes and making text of them: big-endian integers, decimal and hex digits, ASCII str,
 * IPv4 text. Every part of the extension uses them.
 *
 * static inline: too small and too hot to call across files. Every function here produces exactly what the
 * pure-Python path does (tests/test_decode_fast*.py compare the serialised documents byte for byte).
 */
#ifndef FLOWSINK_NATIVE_BYTES_TEXT_H
#define FLOWSINK_NATIVE_BYTES_TEXT_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char HEX[] = "0123456789abcdef";

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

/* ASCII text -> str without UTF-8 decoding */
static inline PyObject *ascii_text(const char *text, Py_ssize_t n) {
    PyObject *out = PyUnicode_New(n, 127);
    if (out != NULL) memcpy(PyUnicode_1BYTE_DATA(out), text, (size_t)n);
    return out;
}

/* decimal digits of value into out; returns the number of digits written */
static inline int decimal(char *out, unsigned long long value) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    for (int i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    return n;
}

/* lowercase hex of n bytes into out[2n] */
static inline void hex_chars(char *out, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) { out[2 * i] = HEX[p[i] >> 4]; out[2 * i + 1] = HEX[p[i] & 15]; }
}

/* the decimal digits of a byte into out; their number (divisions by constants only: no loop, no reversal) */
static inline int octet_chars(char *out, unsigned v) {
    if (v >= 100) {
        out[0] = (char)('0' + v / 100); out[1] = (char)('0' + v / 10 % 10); out[2] = (char)('0' + v % 10);
        return 3;
    }
    if (v >= 10) { out[0] = (char)('0' + v / 10); out[1] = (char)('0' + v % 10); return 2; }
    out[0] = (char)('0' + v);
    return 1;
}

/* dotted-quad text of 4 bytes into out[15], as inet_ntop writes it; its length */
static inline int ipv4_chars(char *out, const unsigned char *p) {
    int n = octet_chars(out, p[0]);
    for (int i = 1; i < 4; i++) {
        out[n++] = '.';
        n += octet_chars(out + n, p[i]);
    }
    return n;
}

/* dotted-quad text of 4 bytes, as inet_ntop writes it */
static inline PyObject *ipv4_text(const unsigned char *p) {
    char text[16];
    return ascii_text(text, ipv4_chars(text, p));
}

#endif
