/* Community ID v1 (https://github.com/corelight/community-id-spec), the rules of
 * flowsink.normalize.common.community_digest: the SHA-1 digest of a flow's 5-tuple, its "1:<base64>" text, and
 * flow.id (the exporter's tag + the digest's first 10 bytes in hex). The NetFlow and sFlow writers call these
 * directly; community_pair and community_digest are their Python entry points.
 */
#ifndef FLOWSINK_NATIVE_COMMUNITY_ID_H
#define FLOWSINK_NATIVE_COMMUNITY_ID_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#include "json_writer.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* the digest of (src, sport) -> (dst, dport) over protocol proto, addresses of alen (4 or 16) bytes; ICMP and
 * ICMPv6 take type and code in sport and dport */
void community_id_digest(const unsigned char *src, const unsigned char *dst, size_t alen, int proto,
                         unsigned long long sport, unsigned long long dport, unsigned seed, unsigned char digest[20]);

/* "1:" + base64 of a digest (28 characters with one '=') as a str */
PyObject *community_id_text(const unsigned char digest[20]);

/* flow.id: the exporter's (or agent's) tag + hex of the digest's first 10 bytes, as a str */
PyObject *community_flow_id(PyObject *tag, const unsigned char digest[20]);

/* a port (or ICMP type/code): a Python int >= 0 that fits 64 bits; anything else raises OverflowError/TypeError
 * (the caller leaves the flow to the Python path) */
int community_id_port(PyObject *value, unsigned long long *out);

/* text address -> packed bytes, the family chosen as flowsink.normalize.netflow._packed does; 0 if invalid */
size_t community_id_address(PyObject *text, unsigned char out[16]);

/* "1:" + base64 of a digest, quoted: the text community_id_text makes, as JSON */
static inline int jb_community(JsonBuf *b, const unsigned char d[20]) {
    if (jb_reserve(b, 32) < 0) return -1;
    char *out = b->data + b->len;
    int o = 0;
    out[o++] = '"'; out[o++] = '1'; out[o++] = ':';
    for (int i = 0; i < 21; i += 3) {   /* 20 bytes: the last group has two, one '=' of padding */
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) | (i + 2 < 20 ? d[i + 2] : 0);
        out[o++] = B64[(v >> 18) & 63]; out[o++] = B64[(v >> 12) & 63]; out[o++] = B64[(v >> 6) & 63];
        out[o++] = i + 2 < 20 ? B64[v & 63] : '=';
    }
    out[o++] = '"';
    b->len += o;
    return 0;
}

#endif
