/* Community ID v1 (community_id.h), with the SHA-1 it hashes with.
 *
 * SHA-1 is written out below rather than linked from OpenSSL: the extension must build on a fresh machine with
 * nothing but a C compiler and Python's headers (no third-party libraries), and the Community ID only ever
 * hashes one or two 64-byte blocks, where a small portable implementation is as fast as any.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "bytes_text.h"
#include "community_id.h"
#include "module.h"

/* ---- SHA-1 (FIPS 180-4), only what one short message needs ------------------------------------------ */

#define ROL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

/* one round; a..e rotate through the macro's arguments instead of being moved, and the schedule is the 16 words
 * of a ring: a round per flow's Community ID is the hash's whole cost, and this form has no branch or copy */
#define SHA1_ROUND(a, b, c, d, e, f, k, i)                                                                     \
    do {                                                                                                       \
        if ((i) >= 16)                                                                                         \
            w[(i) & 15] = ROL(w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^ w[((i) + 2) & 15] ^ w[(i) & 15], 1);   \
        e += ROL(a, 5) + (f) + (k) + w[(i) & 15];                                                              \
        b = ROL(b, 30);                                                                                        \
    } while (0)
#define SHA1_F1(b, c, d) (d ^ (b & (c ^ d)))
#define SHA1_F2(b, c, d) (b ^ c ^ d)
#define SHA1_F3(b, c, d) ((b & c) | (d & (b | c)))
#define SHA1_FIVE(F, k, i)                                                                                     \
    SHA1_ROUND(a, b, c, d, e, F(b, c, d), k, (i));                                                             \
    SHA1_ROUND(e, a, b, c, d, F(a, b, c), k, (i) + 1);                                                         \
    SHA1_ROUND(d, e, a, b, c, F(e, a, b), k, (i) + 2);                                                         \
    SHA1_ROUND(c, d, e, a, b, F(d, e, a), k, (i) + 3);                                                         \
    SHA1_ROUND(b, c, d, e, a, F(c, d, e), k, (i) + 4)

static void sha1_block(uint32_t state[5], const unsigned char *block) {
    uint32_t w[16];
    for (int i = 0; i < 16; i++) w[i] = be32(block + 4 * i);
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    for (int i = 0; i < 20; i += 5) { SHA1_FIVE(SHA1_F1, 0x5A827999u, i); }
    for (int i = 20; i < 40; i += 5) { SHA1_FIVE(SHA1_F2, 0x6ED9EBA1u, i); }
    for (int i = 40; i < 60; i += 5) { SHA1_FIVE(SHA1_F3, 0x8F1BBCDCu, i); }
    for (int i = 60; i < 80; i += 5) { SHA1_FIVE(SHA1_F2, 0xCA62C1D6u, i); }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d; state[4] += e;
}

/* message of at most 119 bytes (the Community ID input is 2 + 16 + 16 + 6 = 40 at most) */
static void sha1_short(const unsigned char *msg, size_t len, unsigned char digest[20]) {
    unsigned char buf[128];
    uint32_t state[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = (len + 9 <= 64) ? 64 : 128;
    memset(buf, 0, total);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(state, buf);
    if (total == 128) sha1_block(state, buf + 64);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (unsigned char)(state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)state[i];
    }
}

/* ---- Community ID v1 -------------------------------------------------------------------------------------- */

static int icmp_pair(int proto, unsigned long long type, unsigned long long *answer) {
    static const int v4[][2] = {{8, 0}, {0, 8}, {13, 14}, {14, 13}, {15, 16}, {16, 15}, {10, 9}, {9, 10},
                                {17, 18}, {18, 17}};
    static const int v6[][2] = {{128, 129}, {129, 128}, {133, 134}, {134, 133}, {135, 136}, {136, 135},
                                {130, 131}, {131, 130}, {144, 145}, {145, 144}};
    const int (*pairs)[2] = proto == 1 ? v4 : v6;
    for (int i = 0; i < 10; i++)
        if ((unsigned long long)pairs[i][0] == type) { *answer = (unsigned long long)pairs[i][1]; return 1; }
    return 0;
}

void community_id_digest(const unsigned char *src, const unsigned char *dst, size_t alen, int proto,
                         unsigned long long sport, unsigned long long dport, unsigned seed, unsigned char digest[20]) {
    int one_way = 0;
    if (proto == 1 || proto == 58) {
        unsigned long long answer;
        if (icmp_pair(proto, sport, &answer)) dport = answer;
        else one_way = 1;   /* type and code stay as given */
    }
    if (!one_way) {
        int order = memcmp(src, dst, alen);
        if (order > 0 || (order == 0 && sport > dport)) {
            const unsigned char *t = src; src = dst; dst = t;
            unsigned long long p = sport; sport = dport; dport = p;
        }
    }
    unsigned char msg[40];
    size_t n = 0;
    msg[n++] = (unsigned char)(seed >> 8); msg[n++] = (unsigned char)seed;
    memcpy(msg + n, src, alen); n += alen;
    memcpy(msg + n, dst, alen); n += alen;
    msg[n++] = (unsigned char)proto; msg[n++] = 0;
    if (proto == 1 || proto == 6 || proto == 17 || proto == 58 || proto == 132) {
        msg[n++] = (unsigned char)((sport >> 8) & 0xFF); msg[n++] = (unsigned char)(sport & 0xFF);
        msg[n++] = (unsigned char)((dport >> 8) & 0xFF); msg[n++] = (unsigned char)(dport & 0xFF);
    }
    sha1_short(msg, n, digest);
}

PyObject *community_id_text(const unsigned char d[20]) {
    char out[30];
    out[0] = '1'; out[1] = ':';
    int o = 2;
    for (int i = 0; i < 18; i += 3) {
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) | d[i + 2];
        out[o++] = B64[(v >> 18) & 63]; out[o++] = B64[(v >> 12) & 63];
        out[o++] = B64[(v >> 6) & 63]; out[o++] = B64[v & 63];
    }
    uint32_t v = ((uint32_t)d[18] << 16) | ((uint32_t)d[19] << 8);
    out[o++] = B64[(v >> 18) & 63]; out[o++] = B64[(v >> 12) & 63]; out[o++] = B64[(v >> 6) & 63];
    out[o++] = '=';
    return ascii_text(out, o);
}

PyObject *community_flow_id(PyObject *tag, const unsigned char d[20]) {
    char hex[20];
    hex_chars(hex, d, 10);
    if (!PyUnicode_IS_ASCII(tag)) {
        PyObject *tail = PyUnicode_FromStringAndSize(hex, 20);
        if (tail == NULL) return NULL;
        PyObject *joined = PyUnicode_Concat(tag, tail);
        Py_DECREF(tail);
        return joined;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(tag);
    PyObject *out = PyUnicode_New(n + 20, 127);
    if (out == NULL) return NULL;
    memcpy(PyUnicode_1BYTE_DATA(out), PyUnicode_1BYTE_DATA(tag), (size_t)n);
    memcpy(PyUnicode_1BYTE_DATA(out) + n, hex, 20);
    return out;
}

int community_id_port(PyObject *value, unsigned long long *out) {
    if (!PyLong_Check(value)) { PyErr_SetString(PyExc_TypeError, "port must be int"); return -1; }
    *out = PyLong_AsUnsignedLongLong(value);
    return (*out == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

size_t community_id_address(PyObject *text, unsigned char out[16]) {
    Py_ssize_t size;
    const char *s = PyUnicode_AsUTF8AndSize(text, &size);
    if (s == NULL) { PyErr_Clear(); return 0; }
    if ((Py_ssize_t)strlen(s) != size) return 0;   /* embedded NUL: not an address */
    if (strchr(s, ':') != NULL) return inet_pton(AF_INET6, s, out) == 1 ? 16 : 0;
    return inet_pton(AF_INET, s, out) == 1 ? 4 : 0;
}

/* community_pair(src_ip, dst_ip, proto, sport, dport, exporter_tag) -> (community_id, flow_id) or None */
PyObject *py_community_pair(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *src, *dst, *tag, *sport_obj, *dport_obj;
    int proto;
    if (!PyArg_ParseTuple(args, "UUiOOU", &src, &dst, &proto, &sport_obj, &dport_obj, &tag)) return NULL;
    unsigned long long sport, dport;
    if (proto < 0 || proto > 255) { PyErr_SetString(PyExc_OverflowError, "protocol out of range"); return NULL; }
    if (community_id_port(sport_obj, &sport) < 0 || community_id_port(dport_obj, &dport) < 0) return NULL;
    unsigned char a[16], b[16], digest[20];
    size_t la = community_id_address(src, a), lb = community_id_address(dst, b);
    if (la == 0 || lb == 0 || la != lb) Py_RETURN_NONE;
    community_id_digest(a, b, la, proto, sport, dport, 0, digest);
    PyObject *cid = community_id_text(digest);
    PyObject *fid = cid ? community_flow_id(tag, digest) : NULL;
    if (fid == NULL) { Py_XDECREF(cid); return NULL; }
    return Py_BuildValue("(NN)", cid, fid);
}

/* community_digest(src, dst, proto, sport, dport, seed) -> the 20-byte digest, or None (addresses of two sizes) */
PyObject *py_community_digest(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src, dst;
    int proto;
    unsigned int seed;
    PyObject *sport_obj, *dport_obj;
    if (!PyArg_ParseTuple(args, "y*y*iOOI", &src, &dst, &proto, &sport_obj, &dport_obj, &seed)) return NULL;
    PyObject *result = NULL;
    unsigned long long sport, dport;
    if (proto < 0 || proto > 255 || seed > 0xFFFF) {
        PyErr_SetString(PyExc_OverflowError, "protocol or seed out of range");
    } else if (community_id_port(sport_obj, &sport) == 0 && community_id_port(dport_obj, &dport) == 0) {
        if (src.len != dst.len) {
            result = Py_None; Py_INCREF(result);
        } else if (src.len > 16) {   /* not an address; the Python path hashes it as given */
            PyErr_SetString(PyExc_OverflowError, "address longer than 16 bytes");
        } else {
            unsigned char digest[20];
            community_id_digest(src.buf, dst.buf, (size_t)src.len, proto, sport, dport, seed, digest);
            result = PyBytes_FromStringAndSize((const char *)digest, 20);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}
