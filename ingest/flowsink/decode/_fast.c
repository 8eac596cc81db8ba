/*
 * flowsink.decode._fast: optional C accelerator for the hottest per-record work of the NetFlow decoders.
 *
 * Why C: profiles of bench/bench_decode.py showed the cost is building each ECS document, not decoding: a
 * NetFlow v5 record becomes ~25 raw fields, five nested objects, two ISO-8601 times and a Community ID
 * (SHA-1 over the packed 5-tuple, base64, hex). In Python that is ~60 bytecode-level steps per record even
 * after removing every repeated lookup (generated builders, cached plans, cached time text): about 12 us per
 * flow on the loaded development machine, 4x short of the 300k flows/s target. The same work done here with
 * the C-API costs a fraction of that; orjson then serialises the dicts.
 *
 * What is here:
 *   v5_documents(...)   a whole NetFlow v5 datagram's records -> list of ECS documents (dicts), exactly as
 *                       flowsink.normalize.netflow.flow_document builds them (same keys, same order, same
 *                       shared sub-objects), so the pure-Python path and this one are interchangeable;
 *   fixed_records(...)  fixed-length NetFlow v9/IPFIX template records -> record dicts;
 *   flow_documents(...) a data set's records -> ECS documents, as normalize.netflow.flow_document;
 *   community_pair(src_text, dst_text, proto, sport, dport) -> ("1:<base64>", "<20 hex>") or None;
 *   community_digest(src_bytes, dst_bytes, proto, sport, dport, seed) -> 20-byte SHA-1 digest or None.
 *
 * SHA-1 is written out below rather than linked from OpenSSL: the extension must build on a fresh machine
 * with nothing but a C compiler and Python's headers (no third-party libraries), and the Community ID only
 * ever hashes one or two 64-byte blocks, where a small portable implementation is as fast as any.
 *
 * The extension is optional (setup.py builds it with optional=True; FLOWSINK_NO_EXTENSION=1 ignores it);
 * tests/test_decode_fast.py checks that both paths give byte-identical documents.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "_fast_common.h"
#include "_fast_json.h"


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

/* ---- Community ID v1 (same rules as flowsink.normalize.common.community_digest) ----------------------- */

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

static void community_raw(const unsigned char *src, const unsigned char *dst, size_t alen, int proto,
                          unsigned long long sport, unsigned long long dport, unsigned seed,
                          unsigned char digest[20]) {
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



/* exporter tag + hex of the digest's first 10 bytes: flow.id */
static PyObject *flow_id_text(PyObject *tag, const unsigned char d[20]) {
    char hex[20];
    for (int i = 0; i < 10; i++) { hex[2 * i] = HEX[d[i] >> 4]; hex[2 * i + 1] = HEX[d[i] & 15]; }
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

/* a Python int >= 0 that fits 64 bits; anything else raises OverflowError/TypeError (caller falls back) */
static int as_u64(PyObject *value, unsigned long long *out) {
    if (!PyLong_Check(value)) { PyErr_SetString(PyExc_TypeError, "port must be int"); return -1; }
    *out = PyLong_AsUnsignedLongLong(value);
    return (*out == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* text address -> packed bytes, the family chosen as flowsink.normalize.netflow._packed does; 0 if invalid */
static size_t pack_text(PyObject *text, unsigned char out[16]) {
    Py_ssize_t size;
    const char *s = PyUnicode_AsUTF8AndSize(text, &size);
    if (s == NULL) { PyErr_Clear(); return 0; }
    if ((Py_ssize_t)strlen(s) != size) return 0;   /* embedded NUL: not an address */
    if (strchr(s, ':') != NULL) return inet_pton(AF_INET6, s, out) == 1 ? 16 : 0;
    return inet_pton(AF_INET, s, out) == 1 ? 4 : 0;
}

static PyObject *py_community_pair(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *src, *dst, *tag, *sport_obj, *dport_obj;
    int proto;
    if (!PyArg_ParseTuple(args, "UUiOOU", &src, &dst, &proto, &sport_obj, &dport_obj, &tag)) return NULL;
    unsigned long long sport, dport;
    if (proto < 0 || proto > 255) { PyErr_SetString(PyExc_OverflowError, "protocol out of range"); return NULL; }
    if (as_u64(sport_obj, &sport) < 0 || as_u64(dport_obj, &dport) < 0) return NULL;
    unsigned char a[16], b[16], digest[20];
    size_t la = pack_text(src, a), lb = pack_text(dst, b);
    if (la == 0 || lb == 0 || la != lb) Py_RETURN_NONE;
    community_raw(a, b, la, proto, sport, dport, 0, digest);
    PyObject *cid = community_text(digest);
    PyObject *fid = cid ? flow_id_text(tag, digest) : NULL;
    if (fid == NULL) { Py_XDECREF(cid); return NULL; }
    return Py_BuildValue("(NN)", cid, fid);
}

static PyObject *py_community_digest(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer src, dst;
    int proto;
    unsigned int seed;
    PyObject *sport_obj, *dport_obj;
    if (!PyArg_ParseTuple(args, "y*y*iOOI", &src, &dst, &proto, &sport_obj, &dport_obj, &seed)) return NULL;
    PyObject *result = NULL;
    unsigned long long sport, dport;
    if (proto < 0 || proto > 255 || seed > 0xFFFF) {
        PyErr_SetString(PyExc_OverflowError, "protocol or seed out of range");
    } else if (as_u64(sport_obj, &sport) == 0 && as_u64(dport_obj, &dport) == 0) {
        if (src.len != dst.len) {
            result = Py_None; Py_INCREF(result);
        } else if (src.len > 16) {   /* not an address; the Python path hashes it as given */
            PyErr_SetString(PyExc_OverflowError, "address longer than 16 bytes");
        } else {
            unsigned char digest[20];
            community_raw(src.buf, dst.buf, (size_t)src.len, proto, sport, dport, seed, digest);
            result = PyBytes_FromStringAndSize((const char *)digest, 20);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* ---- times ------------------------------------------------------------------------------------------------ */


/* epoch ms -> "YYYY-MM-DDTHH:MM:SS.mmmZ", as flowsink.normalize.netflow.iso_ms (floor division, UTC; a second
 * gmtime cannot take gives the epoch, as Python's does) */
static PyObject *iso_ms(long long epoch_ms) {
    char text[48];
    int n = jb_iso_ms_text(epoch_ms, text);
    return n ? ascii_text(text, n) : PyUnicode_FromString(ISO_FALLBACK);
}

/* ---- NetFlow v5 documents --------------------------------------------------------------------------------- */

enum {
    K_ID, K_TIMESTAMP, K_EVENT, K_NETWORK, K_OBSERVER, K_SOURCE, K_DESTINATION, K_FLOW, K_NETFLOW,
    K_KIND, K_CATEGORY, K_TYPE, K_ACTION, K_START, K_END, K_DURATION,
    K_IANA, K_TRANSPORT, K_BYTES, K_PACKETS, K_DIRECTION, K_COMMUNITY, K_IP, K_PORT, K_INGRESS, K_EGRESS,
    K_INTERFACE, K_SAMPLING_RATE, K_EXPORTER, K_PLAIN_ID,
    K_SRCADDR, K_DSTADDR, K_NEXTHOP, K_INPUT, K_OUTPUT, K_DPKTS, K_DOCTETS, K_FIRST, K_LAST, K_SRCPORT,
    K_DSTPORT, K_TCPFLAGS, K_PROT, K_TOS, K_SRCAS, K_DSTAS, K_SRCMASK, K_DSTMASK, K_ENGINE_TYPE, K_ENGINE_ID,
    K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM, K_FLOW_SEQUENCE,
    V_EVENT, V_NETFLOW_FLOW, V_IPV4, V_UNKNOWN, V_TRUNCATED_RECORD, K_COUNT
};

static const char *KEY_TEXT[K_COUNT] = {
    "_id", "@timestamp", "event", "network", "observer", "source", "destination", "flow", "netflow",
    "kind", "category", "type", "action", "start", "end", "duration",
    "iana_number", "transport", "bytes", "packets", "direction", "community_id", "ip", "port", "ingress", "egress",
    "interface", "sampling_rate", "exporter", "id",
    "source_ipv4_address", "destination_ipv4_address", "ip_next_hop_ipv4_address", "ingress_interface",
    "egress_interface", "packet_delta_count", "octet_delta_count", "flow_start_sys_up_time",
    "flow_end_sys_up_time", "source_transport_port", "destination_transport_port", "tcp_control_bits",
    "protocol_identifier", "ip_class_of_service", "bgp_source_as_number", "bgp_destination_as_number",
    "source_ipv4_prefix_length", "destination_ipv4_prefix_length", "engine_type", "engine_id",
    "sampling_interval", "sampling_algorithm", "flow_sequence",
    "event", "netflow_flow", "ipv4", "unknown", "truncated_record",
};

static PyObject *KEYS[K_COUNT];
static PyObject *SMALL_NS;   /* 1_000_000: ms -> ns */
static PyObject *ONE, *SMALL_ZERO;
static PyObject *INFO_TYPE;   /* ["info"]: an options document's event.type */
static PyObject *SMALL_TEXT[256];   /* "0".."255": network.iana_number */
static PyObject *TRANSPORT[256];    /* protocol -> ECS transport name, NULL when unnamed */

static const struct { int number; const char *name; } TRANSPORT_NAMES[] = {
    {1, "icmp"}, {2, "igmp"}, {4, "ipv4"}, {6, "tcp"}, {17, "udp"}, {41, "ipv6"}, {47, "gre"}, {50, "esp"},
    {51, "ah"}, {58, "ipv6-icmp"}, {88, "eigrp"}, {89, "ospf"}, {103, "pim"}, {112, "vrrp"}, {115, "l2tp"},
    {132, "sctp"},
};


/* set d[key] = value, stealing the reference to value; -1 on error */
static int set_steal(PyObject *d, int key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(d, KEYS[key], value);
    Py_DECREF(value);
    return rc;
}



/* prefix + decimal index: the document _id */
static PyObject *indexed_id(PyObject *prefix, Py_ssize_t index) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(prefix);
    char digits[24];
    int d = decimal(digits, (unsigned long long)index);
    if (!PyUnicode_IS_ASCII(prefix)) return PyUnicode_FromFormat("%U%zd", prefix, index);
    PyObject *out = PyUnicode_New(n + d, 127);
    if (out == NULL) return NULL;
    memcpy(PyUnicode_1BYTE_DATA(out), PyUnicode_1BYTE_DATA(prefix), (size_t)n);
    memcpy(PyUnicode_1BYTE_DATA(out) + n, digits, (size_t)d);
    return out;
}


/* uptime-relative time -> epoch ms across one 32-bit wrap either way (normalize.netflow.flow_document) */
static long long uptime_to_ms(long long export_ms, uint32_t uptime, uint32_t value) {
    uint32_t behind = uptime - value;
    long long offset = behind < 0x80000000u ? (long long)behind : (long long)behind - 4294967296LL;
    return export_ms - offset;
}

static PyObject *interface_named(PyObject *index, PyObject *names);

/* {"interface": {"id": "<index>"}}: v5 has no interface names */
static PyObject *interface_object(uint32_t index) {
    PyObject *number = PyLong_FromUnsignedLong(index);
    if (number == NULL) return NULL;
    PyObject *object = interface_named(number, Py_None);
    Py_DECREF(number);
    return object;
}

/* The raw record, under the IPFIX names netflow_v5.py uses, in the same order. */
static PyObject *v5_record(const unsigned char *r, PyObject *const header[6], PyObject *exporter_fields) {
    PyObject *rec = _PyDict_NewPresized(24);   /* no resizing on the way to 24 keys */
    if (rec == NULL) return NULL;
    if (set_steal(rec, K_SRCADDR, ipv4_text(r)) < 0 || set_steal(rec, K_DSTADDR, ipv4_text(r + 4)) < 0 ||
        set_steal(rec, K_NEXTHOP, ipv4_text(r + 8)) < 0 ||
        set_steal(rec, K_INPUT, PyLong_FromLong(be16(r + 12))) < 0 ||
        set_steal(rec, K_OUTPUT, PyLong_FromLong(be16(r + 14))) < 0 ||
        set_steal(rec, K_DPKTS, PyLong_FromUnsignedLong(be32(r + 16))) < 0 ||
        set_steal(rec, K_DOCTETS, PyLong_FromUnsignedLong(be32(r + 20))) < 0 ||
        set_steal(rec, K_FIRST, PyLong_FromUnsignedLong(be32(r + 24))) < 0 ||
        set_steal(rec, K_LAST, PyLong_FromUnsignedLong(be32(r + 28))) < 0 ||
        set_steal(rec, K_SRCPORT, PyLong_FromLong(be16(r + 32))) < 0 ||
        set_steal(rec, K_DSTPORT, PyLong_FromLong(be16(r + 34))) < 0 ||
        set_steal(rec, K_TCPFLAGS, PyLong_FromLong(r[37])) < 0 ||
        set_steal(rec, K_PROT, PyLong_FromLong(r[38])) < 0 ||
        set_steal(rec, K_TOS, PyLong_FromLong(r[39])) < 0 ||
        set_steal(rec, K_SRCAS, PyLong_FromLong(be16(r + 40))) < 0 ||
        set_steal(rec, K_DSTAS, PyLong_FromLong(be16(r + 42))) < 0 ||
        set_steal(rec, K_SRCMASK, PyLong_FromLong(r[44])) < 0 ||
        set_steal(rec, K_DSTMASK, PyLong_FromLong(r[45])) < 0)
        goto fail;
    static const int header_keys[6] = {K_ENGINE_TYPE, K_ENGINE_ID, K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM,
                                       K_FLOW_SEQUENCE, K_EXPORTER};
    for (int i = 0; i < 5; i++)
        if (PyDict_SetItem(rec, KEYS[header_keys[i]], header[i]) < 0) goto fail;
    if (PyDict_SetItem(rec, KEYS[K_EXPORTER], exporter_fields) < 0) goto fail;
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

typedef struct {
    PyObject *exporter, *timestamp, *exporter_fields, *tag, *id_prefix, *category, *connection;
    PyObject *header[6];
    PyObject *rate;
    unsigned long long rate_value;
    long long export_ms;
    uint32_t uptime;
    unsigned long long scale;
} V5Context;

/* what a v5 record's ECS fields are computed from, shared by the document and the bulk-line writers */
typedef struct {
    long long start, end;
    int protocol;
    unsigned src_port, dst_port;
    unsigned char digest[20];   /* Community ID */
} V5Flow;

static void v5_flow(const unsigned char *r, const V5Context *c, V5Flow *f) {
    f->protocol = r[38];
    f->src_port = be16(r + 32);
    f->dst_port = be16(r + 34);
    f->start = uptime_to_ms(c->export_ms, c->uptime, be32(r + 24));
    f->end = uptime_to_ms(c->export_ms, c->uptime, be32(r + 28));
    /* ICMP type/code come from the destination port, as Cisco sends them */
    unsigned long long a = f->src_port, b = f->dst_port;
    if (f->protocol == 1 || f->protocol == 58) { a = (f->dst_port >> 8) & 0xFF; b = f->dst_port & 0xFF; }
    community_raw(r, r + 4, 4, f->protocol, a, b, 0, f->digest);
}

static PyObject *v5_document(const unsigned char *r, Py_ssize_t index, const V5Context *c) {
    PyObject *doc = NULL, *event = NULL, *network = NULL, *source = NULL, *destination = NULL;
    PyObject *observer = NULL, *flow = NULL, *record = NULL;
    doc = _PyDict_NewPresized(9); event = _PyDict_NewPresized(7); network = _PyDict_NewPresized(7);
    source = PyDict_New();
    destination = PyDict_New(); observer = PyDict_New(); flow = PyDict_New();
    if (!doc || !event || !network || !source || !destination || !observer || !flow) goto fail;
    V5Flow f;
    v5_flow(r, c, &f);

    /* event */
    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        PyDict_SetItem(event, KEYS[K_CATEGORY], c->category) < 0 ||
        PyDict_SetItem(event, KEYS[K_TYPE], c->connection) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], KEYS[V_NETFLOW_FLOW]) < 0) goto fail;
    if (set_steal(event, K_START, iso_ms(f.start)) < 0 || set_steal(event, K_END, iso_ms(f.end)) < 0) goto fail;
    if (f.end >= f.start && set_steal(event, K_DURATION, PyLong_FromLongLong((f.end - f.start) * 1000000LL)) < 0)
        goto fail;

    /* the document's first keys, in flow_document's order */
    if (set_steal(doc, K_ID, indexed_id(c->id_prefix, index)) < 0 ||
        PyDict_SetItem(doc, KEYS[K_TIMESTAMP], c->timestamp) < 0 ||
        PyDict_SetItem(doc, KEYS[K_EVENT], event) < 0 || PyDict_SetItem(doc, KEYS[K_NETWORK], network) < 0)
        goto fail;

    /* the raw record first: the ECS fields share its values (the same objects, as in the Python path) */
    record = v5_record(r, c->header, c->exporter_fields);
    if (record == NULL) goto fail;
    if (PyDict_SetItem(source, KEYS[K_IP], PyDict_GetItem(record, KEYS[K_SRCADDR])) < 0 ||
        PyDict_SetItem(network, KEYS[K_TYPE], KEYS[V_IPV4]) < 0 ||
        PyDict_SetItem(destination, KEYS[K_IP], PyDict_GetItem(record, KEYS[K_DSTADDR])) < 0 ||
        PyDict_SetItem(source, KEYS[K_PORT], PyDict_GetItem(record, KEYS[K_SRCPORT])) < 0 ||
        PyDict_SetItem(destination, KEYS[K_PORT], PyDict_GetItem(record, KEYS[K_DSTPORT])) < 0) goto fail;
    if (PyDict_SetItem(network, KEYS[K_IANA], SMALL_TEXT[f.protocol]) < 0) goto fail;
    if (TRANSPORT[f.protocol] != NULL && PyDict_SetItem(network, KEYS[K_TRANSPORT], TRANSPORT[f.protocol]) < 0)
        goto fail;
    unsigned long long bytes = be32(r + 20), packets = be32(r + 16);
    if ((c->scale == 1 ? PyDict_SetItem(network, KEYS[K_BYTES], PyDict_GetItem(record, KEYS[K_DOCTETS]))
                       : set_steal(network, K_BYTES, PyLong_FromUnsignedLongLong(bytes * c->scale))) < 0 ||
        (c->scale == 1 ? PyDict_SetItem(network, KEYS[K_PACKETS], PyDict_GetItem(record, KEYS[K_DPKTS]))
                       : set_steal(network, K_PACKETS, PyLong_FromUnsignedLongLong(packets * c->scale))) < 0 ||
        PyDict_SetItem(network, KEYS[K_DIRECTION], KEYS[V_UNKNOWN]) < 0) goto fail;
    if (set_steal(network, K_COMMUNITY, community_text(f.digest)) < 0) goto fail;

    if (PyDict_SetItem(observer, KEYS[K_IP], c->exporter) < 0 ||
        set_steal(observer, K_INGRESS, interface_object(be16(r + 12))) < 0 ||
        set_steal(observer, K_EGRESS, interface_object(be16(r + 14))) < 0 ||
        PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0 ||
        PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) goto fail;
    if (PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], c->rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, flow_id_text(c->tag, f.digest)) < 0 ||
        PyDict_SetItem(doc, KEYS[K_FLOW], flow) < 0) goto fail;
    if (PyDict_SetItem(doc, KEYS[K_NETFLOW], record) < 0) goto fail;
    PyObject *tree[] = {record, event, network, source, destination, observer, flow, doc};
    for (int i = 0; i < 8; i++) untrack(tree[i]);
    Py_DECREF(record); Py_DECREF(event); Py_DECREF(network); Py_DECREF(source); Py_DECREF(destination);
    Py_DECREF(observer); Py_DECREF(flow);
    return doc;
fail:
    Py_XDECREF(doc); Py_XDECREF(event); Py_XDECREF(network); Py_XDECREF(source); Py_XDECREF(destination);
    Py_XDECREF(observer); Py_XDECREF(flow); Py_XDECREF(record);
    return NULL;
}

/* v5_documents and v5_bulk take the same arguments up to here */
#define V5_ARGS "y*nUUO!UUO!O!LkOkOOOOO"
#define V5_ARG_POINTERS(c, payload, count, uptime, scale)                                                          \
    &payload, &count, &c.exporter, &c.timestamp, &PyDict_Type, &c.exporter_fields, &c.tag, &c.id_prefix,         \
        &PyList_Type, &c.category, &PyList_Type, &c.connection, &c.export_ms, &uptime, &c.rate, &scale,          \
        &c.header[0], &c.header[1], &c.header[2], &c.header[3], &c.header[4]

static PyObject *py_v5_documents(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer payload;
    Py_ssize_t count;
    V5Context c;
    unsigned long scale, uptime;
    if (!PyArg_ParseTuple(args, V5_ARGS, V5_ARG_POINTERS(c, payload, count, uptime, scale))) return NULL;
    c.scale = scale;
    c.uptime = (uint32_t)uptime;
    PyObject *documents = NULL;
    if (count < 0 || payload.len < 24 + count * 48) {
        PyErr_SetString(PyExc_ValueError, "payload shorter than its records");
        goto done;
    }
    documents = PyList_New(count);
    if (documents == NULL) goto done;
    const unsigned char *records = (const unsigned char *)payload.buf + 24;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *doc = v5_document(records + 48 * i, i, &c);
        if (doc == NULL) { Py_CLEAR(documents); goto done; }
        PyList_SET_ITEM(documents, i, doc);
    }
done:
    PyBuffer_Release(&payload);
    return documents;
}

/* ---- bulk lines (flowsink.bulk.encode_document, written without the document dicts) ---------------------- */

static const char *TRANSPORT_TEXT[256];   /* TRANSPORT as C text */

/* a writer's 1 (the Python path decides) or -1 (error) goes straight back to the caller */
#define TRY(expr) do { int rc_ = (expr); if (rc_) return rc_ < 0 ? -1 : rc_; } while (0)

/* What every document of one call shares, JSON-encoded once: pieces cut from one buffer. */
enum { SEG_HEAD, SEG_OBSERVER, SEG_FLOW, SEG_TAIL, SEG_EXTRA, SEG_COUNT };
typedef struct {
    JsonBuf pieces;
    Py_ssize_t cut[SEG_COUNT + 1];
    const char *head, *timestamp, *prefix;   /* action head; @timestamp and the id prefix as UTF-8 */
    Py_ssize_t head_len, timestamp_len, prefix_len;
    int keep_ids;
    const char *kind;   /* index kind: "flows" or "meta" */
} BulkShared;

static int jb_piece(JsonBuf *b, const BulkShared *s, int piece) {
    return jb_put(b, s->pieces.data + s->cut[piece], s->cut[piece + 1] - s->cut[piece]);
}

/* The pieces every document of a call shares: SEG_HEAD `{"@timestamp":..,"event":{..,"action":..`, SEG_OBSERVER
 * `"observer":{"ip":..`, SEG_FLOW `,"id":"<exporter tag` (the digest's hex follows), SEG_TAIL `"exporter":{..}}}\n`
 * (SEG_EXTRA is the caller's). 0; 1 when a value cannot be written as orjson would (the caller makes documents
 * instead); -1 on error. bulk_shared_free(s) in every case. */
static int bulk_shared_begin(BulkShared *s, PyObject *head, int keep_ids, PyObject *timestamp, PyObject *prefix,
                             PyObject *category, PyObject *connection, PyObject *action, PyObject *exporter,
                             PyObject *tag, PyObject *exporter_fields) {
    memset(s, 0, sizeof(*s));
    if (jb_init(&s->pieces, 512) < 0) return -1;
    s->head = PyBytes_AS_STRING(head);
    s->head_len = PyBytes_GET_SIZE(head);
    s->keep_ids = keep_ids;
    s->kind = "flows";
    s->timestamp = PyUnicode_Check(timestamp) ? PyUnicode_AsUTF8AndSize(timestamp, &s->timestamp_len) : NULL;
    s->prefix = s->timestamp && PyUnicode_Check(prefix) ? PyUnicode_AsUTF8AndSize(prefix, &s->prefix_len) : NULL;
    if (s->prefix == NULL) {   /* not text, or surrogates: the Python path decides */
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    JsonBuf *b = &s->pieces;
    s->cut[SEG_HEAD] = b->len;
    TRY(JB_LIT(b, "{\"@timestamp\":"));
    TRY(jb_text(b, s->timestamp, s->timestamp_len));
    TRY(JB_LIT(b, ",\"event\":{\"kind\":\"event\",\"category\":"));
    TRY(jb_pyvalue(b, category, 0));
    TRY(JB_LIT(b, ",\"type\":"));
    TRY(jb_pyvalue(b, connection, 0));
    TRY(JB_LIT(b, ",\"action\":"));
    TRY(jb_pyvalue(b, action, 0));
    s->cut[SEG_OBSERVER] = b->len;
    TRY(JB_LIT(b, "\"observer\":{\"ip\":"));
    TRY(jb_pyvalue(b, exporter, 0));
    s->cut[SEG_FLOW] = b->len;
    TRY(JB_LIT(b, ",\"id\":"));
    if (!PyUnicode_Check(tag)) return 1;
    TRY(jb_pystr(b, tag));
    b->len--;   /* the closing quote comes after the digest's hex */
    s->cut[SEG_TAIL] = b->len;
    TRY(JB_LIT(b, "\"exporter\":"));
    TRY(jb_pyvalue(b, exporter_fields, 0));
    TRY(JB_LIT(b, "}}\n"));
    s->cut[SEG_EXTRA] = s->cut[SEG_COUNT] = b->len;
    return 0;
}

/* the action line of document `index` (its _id: prefix + index); 1 when the Python path must write it */
static int bulk_action(JsonBuf *b, const BulkShared *s, Py_ssize_t index) {
    char id[128];
    if (s->prefix_len > 100) return 1;   /* ids are a 16-character digest and a set index: never this long */
    memcpy(id, s->prefix, (size_t)s->prefix_len);
    int n = (int)s->prefix_len + decimal(id + s->prefix_len, (unsigned long long)index);
    return jb_action(b, s->head, s->head_len, s->kind, s->timestamp, (int)s->timestamp_len, id, n, s->keep_ids);
}

/* {"interface":{"id":"<index>"}}: v5 has no interface names */
static int jb_interface(JsonBuf *b, unsigned long long index) {
    if (JB_LIT(b, "{\"interface\":{\"id\":\"") < 0 || jb_u64(b, index) < 0) return -1;
    return JB_LIT(b, "\"}}");
}

/* "<tag><first 10 bytes of the digest in hex>" closing the flow object: SEG_FLOW ends inside the quotes */
static int jb_flow_id_tail(JsonBuf *b, const unsigned char digest[20]) {
    if (jb_hex(b, digest, 10) < 0) return -1;
    return JB_LIT(b, "\"}");
}

/* SEG_EXTRA for v5: the header's values that close each record, before its exporter object; 0, 1, -1 */
static int v5_shared_extra(BulkShared *s, V5Context *c) {
    static const int keys[5] = {K_ENGINE_TYPE, K_ENGINE_ID, K_SAMPLING_INTERVAL, K_SAMPLING_ALGORITHM,
                                K_FLOW_SEQUENCE};
    JsonBuf *b = &s->pieces;
    if (!PyLong_CheckExact(c->rate)) return 1;
    c->rate_value = PyLong_AsUnsignedLongLong(c->rate);
    if (PyErr_Occurred()) { PyErr_Clear(); return 1; }
    for (int i = 0; i < 5; i++) {
        TRY(jb_char(b, ','));
        TRY(jb_text(b, KEY_TEXT[keys[i]], (Py_ssize_t)strlen(KEY_TEXT[keys[i]])));
        TRY(jb_char(b, ':'));
        TRY(jb_pyvalue(b, c->header[i], 0));
    }
    TRY(jb_char(b, ','));
    s->cut[SEG_COUNT] = b->len;
    return 0;
}

/* one v5 record's bulk lines; 0, 1 to decline (nothing written that stays), -1 on error */
static int v5_bulk_one(JsonBuf *b, const unsigned char *r, Py_ssize_t index, const V5Context *c,
                       const BulkShared *s) {
    V5Flow f;
    v5_flow(r, c, &f);
    int rc = bulk_action(b, s, index);
    if (rc) return rc;
    if (jb_piece(b, s, SEG_HEAD) < 0 || JB_LIT(b, ",\"start\":") < 0 || jb_iso_ms(b, f.start) < 0 ||
        JB_LIT(b, ",\"end\":") < 0 || jb_iso_ms(b, f.end) < 0) return -1;
    if (f.end >= f.start && (JB_LIT(b, ",\"duration\":") < 0 || jb_i64(b, (f.end - f.start) * 1000000LL) < 0))
        return -1;
    if (JB_LIT(b, "},\"network\":{\"type\":\"ipv4\",\"iana_number\":\"") < 0 || jb_u64(b, (unsigned)f.protocol) < 0 ||
        jb_char(b, '"') < 0) return -1;
    if (TRANSPORT_TEXT[f.protocol] != NULL &&
        (JB_LIT(b, ",\"transport\":\"") < 0 || jb_put(b, TRANSPORT_TEXT[f.protocol],
                                                       (Py_ssize_t)strlen(TRANSPORT_TEXT[f.protocol])) < 0 ||
         jb_char(b, '"') < 0)) return -1;
    if (JB_LIT(b, ",\"bytes\":") < 0 || jb_u64(b, be32(r + 20) * c->scale) < 0 ||
        JB_LIT(b, ",\"packets\":") < 0 || jb_u64(b, be32(r + 16) * c->scale) < 0 ||
        JB_LIT(b, ",\"direction\":\"unknown\",\"community_id\":") < 0 || jb_community(b, f.digest) < 0 ||
        JB_LIT(b, "},") < 0 || jb_piece(b, s, SEG_OBSERVER) < 0 ||
        JB_LIT(b, ",\"ingress\":") < 0 || jb_interface(b, be16(r + 12)) < 0 ||
        JB_LIT(b, ",\"egress\":") < 0 || jb_interface(b, be16(r + 14)) < 0 ||
        JB_LIT(b, "},\"source\":{\"ip\":") < 0 || jb_ipv4(b, r) < 0 ||
        JB_LIT(b, ",\"port\":") < 0 || jb_u64(b, f.src_port) < 0 ||
        JB_LIT(b, "},\"destination\":{\"ip\":") < 0 || jb_ipv4(b, r + 4) < 0 ||
        JB_LIT(b, ",\"port\":") < 0 || jb_u64(b, f.dst_port) < 0 ||
        JB_LIT(b, "},\"flow\":{\"sampling_rate\":") < 0 || jb_u64(b, c->rate_value) < 0 ||
        jb_piece(b, s, SEG_FLOW) < 0 || jb_flow_id_tail(b, f.digest) < 0 ||
        /* netflow.*: the record under the names (and in the order) of v5_record */
        JB_LIT(b, ",\"netflow\":{\"source_ipv4_address\":") < 0 || jb_ipv4(b, r) < 0 ||
        JB_LIT(b, ",\"destination_ipv4_address\":") < 0 || jb_ipv4(b, r + 4) < 0 ||
        JB_LIT(b, ",\"ip_next_hop_ipv4_address\":") < 0 || jb_ipv4(b, r + 8) < 0 ||
        JB_LIT(b, ",\"ingress_interface\":") < 0 || jb_u64(b, be16(r + 12)) < 0 ||
        JB_LIT(b, ",\"egress_interface\":") < 0 || jb_u64(b, be16(r + 14)) < 0 ||
        JB_LIT(b, ",\"packet_delta_count\":") < 0 || jb_u64(b, be32(r + 16)) < 0 ||
        JB_LIT(b, ",\"octet_delta_count\":") < 0 || jb_u64(b, be32(r + 20)) < 0 ||
        JB_LIT(b, ",\"flow_start_sys_up_time\":") < 0 || jb_u64(b, be32(r + 24)) < 0 ||
        JB_LIT(b, ",\"flow_end_sys_up_time\":") < 0 || jb_u64(b, be32(r + 28)) < 0 ||
        JB_LIT(b, ",\"source_transport_port\":") < 0 || jb_u64(b, f.src_port) < 0 ||
        JB_LIT(b, ",\"destination_transport_port\":") < 0 || jb_u64(b, f.dst_port) < 0 ||
        JB_LIT(b, ",\"tcp_control_bits\":") < 0 || jb_u64(b, r[37]) < 0 ||
        JB_LIT(b, ",\"protocol_identifier\":") < 0 || jb_u64(b, r[38]) < 0 ||
        JB_LIT(b, ",\"ip_class_of_service\":") < 0 || jb_u64(b, r[39]) < 0 ||
        JB_LIT(b, ",\"bgp_source_as_number\":") < 0 || jb_u64(b, be16(r + 40)) < 0 ||
        JB_LIT(b, ",\"bgp_destination_as_number\":") < 0 || jb_u64(b, be16(r + 42)) < 0 ||
        JB_LIT(b, ",\"source_ipv4_prefix_length\":") < 0 || jb_u64(b, r[44]) < 0 ||
        JB_LIT(b, ",\"destination_ipv4_prefix_length\":") < 0 || jb_u64(b, r[45]) < 0 ||
        jb_piece(b, s, SEG_EXTRA) < 0 || jb_piece(b, s, SEG_TAIL) < 0)
        return -1;
    return 0;
}

static void bulk_shared_free(BulkShared *s) { jb_free(&s->pieces); }

/* Append a document's lines (bytes), or on decline its dict document, to out; the buffer is rewound. */
static int bulk_append(PyObject *out, JsonBuf *b, int rc, PyObject *(*document)(void *), void *arg) {
    PyObject *item = rc == 0 ? jb_take(b, 0) : (b->len = 0, document(arg));
    if (item == NULL) return -1;
    int added = PyList_Append(out, item);
    Py_DECREF(item);
    return added;
}

typedef struct { const unsigned char *r; Py_ssize_t index; const V5Context *c; } V5Item;
static PyObject *v5_item_document(void *arg) {
    const V5Item *item = arg;
    return v5_document(item->r, item->index, item->c);
}

/* v5_bulk(<v5_documents' arguments>, action_head, keep_ids) -> list: each record's bulk lines (bytes), or
 * its document (dict) where a value cannot be written the way orjson writes it (flowsink.bulk encodes those) */
static PyObject *py_v5_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer payload;
    Py_ssize_t count;
    V5Context c;
    unsigned long scale, uptime;
    PyObject *head;
    int keep_ids;
    if (!PyArg_ParseTuple(args, V5_ARGS "O!p", V5_ARG_POINTERS(c, payload, count, uptime, scale), &PyBytes_Type,
                          &head, &keep_ids))
        return NULL;
    c.scale = scale;
    c.uptime = (uint32_t)uptime;
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    int shared = -1;
    memset(&s, 0, sizeof(s));
    if (count < 0 || payload.len < 24 + count * 48) {
        PyErr_SetString(PyExc_ValueError, "payload shorter than its records");
        goto done;
    }
    shared = bulk_shared_begin(&s, head, keep_ids, c.timestamp, c.id_prefix, c.category, c.connection,
                               KEYS[V_NETFLOW_FLOW], c.exporter, c.tag, c.exporter_fields);
    if (shared == 0) shared = v5_shared_extra(&s, &c);
    if (shared < 0) goto done;
    if ((out = PyList_New(0)) == NULL || jb_init(&b, 2048) < 0) { Py_CLEAR(out); goto done; }
    const unsigned char *records = (const unsigned char *)payload.buf + 24;
    for (Py_ssize_t i = 0; i < count; i++) {
        int rc = shared == 0 ? v5_bulk_one(&b, records + 48 * i, i, &c, &s) : 1;
        V5Item item = {records + 48 * i, i, &c};
        if (rc < 0 || bulk_append(out, &b, rc, v5_item_document, &item) < 0) { Py_CLEAR(out); goto done; }
    }
done:
    bulk_shared_free(&s);
    jb_free(&b);
    PyBuffer_Release(&payload);
    return out;
}

/* ---- generic flow records (NetFlow v9 / IPFIX): normalize.netflow.flow_document in C ---------------------- */

/* set once by normalize.netflow through configure(): the Python pieces the rare cases call back into */
static PyObject *CB_RELATIVE_TIMES, *CB_ISO_MS, *CB_FLOW_ID, *DIRECTIONS, *CATEGORY, *CONNECTION, *MAX_LONG_OBJ;
static PyObject *MAX_DURATION_OBJ;

enum {
    A_SRC, A_DST, A_SRC_PORT, A_DST_PORT, A_FWD_BYTES, A_FWD_PACKETS, A_BIFLOW, A_TIMES, A_UPTIME_ONLY,
    A_REV_BYTES, A_REV_PACKETS,
    A_EXPORT_MS, A_UPTIME_MS, A_TIMESTAMP, A_EXPORTER, A_EXPORTER_TAG, A_EXPORTER_FIELDS,
    F_PROTOCOL, F_START_UP, F_END_UP, F_FLOW_DIRECTION, F_INGRESS, F_EGRESS, F_NAME,
    F_TC4, F_TC6, F_T4, F_T6, F_C4, F_C6, V_IPV6, P_FLOW_START, P_FLOW_END, V_OPTIONS,
    R_FIRST, R_END_UP = R_FIRST + 1, R_START_DELTA, R_END_DELTA, R_LAST, N_COUNT
};
static const char *NAME_TEXT[N_COUNT] = {
    "src", "dst", "src_port", "dst_port", "fwd_bytes", "fwd_packets", "biflow", "times", "uptime_only",
    "rev_bytes", "rev_packets",
    "export_ms", "uptime_ms", "timestamp", "exporter", "exporter_tag", "exporter_fields",
    "protocol_identifier", "flow_start_sys_up_time", "flow_end_sys_up_time", "flow_direction",
    "ingress_interface", "egress_interface", "name",
    "icmp_type_code_ipv4", "icmp_type_code_ipv6", "icmp_type_ipv4", "icmp_type_ipv6", "icmp_code_ipv4",
    "icmp_code_ipv6", "ipv6", "flow_start_", "flow_end_", "netflow_options",
    "flow_start_sys_up_time", "flow_end_sys_up_time", "flow_start_delta_microseconds",
    "flow_end_delta_microseconds", "flow_duration_milliseconds",
};
static PyObject *NAMES[N_COUNT];

/* record.get for a plan entry: a name, a tuple of names (first not None), or None; borrowed, NULL = None */
static PyObject *pick(PyObject *record, PyObject *names) {
    if (PyUnicode_CheckExact(names)) return PyDict_GetItemWithError(record, names);
    if (PyTuple_CheckExact(names)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
            PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(names, i));
            if (v != NULL && v != Py_None) return v;
            if (PyErr_Occurred()) return NULL;
        }
        return NULL;
    }
    return NULL;   /* None: no such field in this layout */
}

static PyObject *first_of(PyObject *record, int a, int b) {
    PyObject *v = PyDict_GetItemWithError(record, NAMES[a]);
    if (v != NULL && v != Py_None) return v;
    v = PyDict_GetItemWithError(record, NAMES[b]);
    return v == Py_None ? NULL : v;
}

static int is_address_text(PyObject *v) {   /* "." or ":" in it: an address, not hex of an odd length */
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    return PyUnicode_FindChar(v, '.', 0, n, 1) >= 0 || PyUnicode_FindChar(v, ':', 0, n, 1) >= 0;
}

/* exact int fitting a long long: 1, else 0 */
static int small_int(PyObject *v, long long *out) {
    if (v == NULL || !PyLong_CheckExact(v)) return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    return overflow == 0 && !(*out == -1 && PyErr_Occurred());
}

static PyObject *iso_any(PyObject *millis) {   /* iso_ms for any int (huge ones through Python's) */
    long long ms;
    if (small_int(millis, &ms)) return iso_ms(ms);
    PyErr_Clear();
    return PyObject_CallOneArg(CB_ISO_MS, millis);
}

/* counter * scale, clamped to an Elasticsearch long unless scale is 1 (flow_document's rule) */
static PyObject *scaled(PyObject *value, PyObject *scale, int scale_is_one) {
    if (scale_is_one) { Py_INCREF(value); return value; }
    PyObject *product = PyNumber_Multiply(value, scale);
    if (product == NULL) return NULL;
    int over = PyObject_RichCompareBool(MAX_LONG_OBJ, product, Py_LT);
    if (over < 0) { Py_DECREF(product); return NULL; }
    if (over) { Py_DECREF(product); Py_INCREF(MAX_LONG_OBJ); return MAX_LONG_OBJ; }
    return product;
}

static PyObject *interface_named(PyObject *index, PyObject *names) {
    PyObject *outer = PyDict_New(), *inner = PyDict_New();
    if (outer == NULL || inner == NULL) goto fail;
    if (set_steal(inner, K_PLAIN_ID, PyObject_Str(index)) < 0) goto fail;
    if (names != Py_None && PyDict_Check(names) && PyDict_GET_SIZE(names)) {
        PyObject *name = PyDict_GetItemWithError(names, index);
        if (name == NULL && PyErr_Occurred()) goto fail;
        if (name != NULL && name != Py_None && PyDict_SetItem(inner, NAMES[F_NAME], name) < 0) goto fail;
    }
    if (PyDict_SetItem(outer, KEYS[K_INTERFACE], inner) < 0) goto fail;
    untrack(inner);
    untrack(outer);
    Py_DECREF(inner);
    return outer;
fail:
    Py_XDECREF(outer); Py_XDECREF(inner);
    return NULL;
}

#define NTP_EPOCH_OFFSET_S 2208988800LL

/* unit text of a time field ("ms", "s", "ntp") -> 0, 1, 2; -1 for anything else */
static int time_unit(PyObject *unit) {
    if (!PyUnicode_Check(unit)) return -1;
    if (PyUnicode_CompareWithASCIIString(unit, "ms") == 0) return 0;
    if (PyUnicode_CompareWithASCIIString(unit, "s") == 0) return 1;
    if (PyUnicode_CompareWithASCIIString(unit, "ntp") == 0) return 2;
    return -1;
}

/* 1 when every dateTime value of the record converts to epoch ms within 64 bits (the C path can take it),
 * 0 when one does not (the Python path must: it is decided before the record is changed), -1 on error */
static int time_values_fit(PyObject *record, PyObject *time_fields) {
    if (!PyTuple_Check(time_fields)) return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(time_fields); i++) {
        PyObject *pair = PyTuple_GET_ITEM(time_fields, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) return 0;
        int unit = time_unit(PyTuple_GET_ITEM(pair, 1));
        PyObject *value = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(pair, 0));
        if (value == NULL) { if (PyErr_Occurred()) return -1; continue; }
        if (!PyLong_Check(value)) continue;             /* not an int: skipped by both paths */
        if (!PyLong_CheckExact(value) || unit < 0) return 0;   /* bool, or a unit only Python knows */
        PyLong_AsUnsignedLongLong(value);   /* 0 .. 2**64-1, what a dateTime element of up to 8 bytes holds */
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* a time element's value -> epoch ms, as normalize.netflow.time_to_ms (exact: up to 75 bits) */
static __int128 time_value_ms(unsigned long long v, int unit) {
    if (unit == 0) return (__int128)v;
    if (unit == 1) return (__int128)v * 1000;
    return ((__int128)(v >> 32) - NTP_EPOCH_OFFSET_S) * 1000 + (__int128)(((v & 0xFFFFFFFFULL) * 1000) >> 32);
}

/* epoch ms beyond 64 bits as a Python int */
static PyObject *wide_int(__int128 value) {
    if (value >= LLONG_MIN && value <= LLONG_MAX) return PyLong_FromLongLong((long long)value);
    unsigned char bytes[16];
    unsigned __int128 bits = (unsigned __int128)value;
    for (int i = 0; i < 16; i++) bytes[i] = (unsigned char)(bits >> (8 * i));
    return _PyLong_FromByteArray(bytes, 16, 1, 1);
}

/* iso_ms for epoch ms beyond 64 bits too: the text Python's iso_ms gives */
static PyObject *iso_wide(__int128 epoch_ms) {
    if (epoch_ms >= LLONG_MIN && epoch_ms <= LLONG_MAX) return iso_ms((long long)epoch_ms);
    __int128 seconds = epoch_ms / 1000, millis = epoch_ms % 1000;
    if (millis < 0) { millis += 1000; seconds -= 1; }
    char text[48];
    int n = seconds >= LLONG_MIN && seconds <= LLONG_MAX ? jb_iso_parts_text((long long)seconds, (int)millis, text) : 0;
    return n ? ascii_text(text, n) : PyUnicode_FromString(ISO_FALLBACK);
}

/* The record's absolute dateTime elements rewritten as ISO text (normalize.netflow._record_times and
 * options_document do that); with start/end given, the first flow_start_* and flow_end_* as epoch-ms ints
 * (new references, left NULL when there is none). time_values_fit(record) must have said 1. */
static int absolute_times(PyObject *record, PyObject *time_fields, PyObject **start, PyObject **end) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(time_fields); i++) {
        PyObject *pair = PyTuple_GET_ITEM(time_fields, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *value = PyDict_GetItemWithError(record, name);
        if (value == NULL) { if (PyErr_Occurred()) return -1; continue; }
        if (!PyLong_CheckExact(value)) continue;
        __int128 millis = time_value_ms(PyLong_AsUnsignedLongLong(value), time_unit(PyTuple_GET_ITEM(pair, 1)));
        PyObject *text = iso_wide(millis);
        if (text == NULL || PyDict_SetItem(record, name, text) < 0) { Py_XDECREF(text); return -1; }
        Py_DECREF(text);
        if (start == NULL) continue;
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        if (*start == NULL && PyUnicode_Tailmatch(name, NAMES[P_FLOW_START], 0, n, -1) == 1) {
            if ((*start = wide_int(millis)) == NULL) return -1;
        } else if (*end == NULL && PyUnicode_Tailmatch(name, NAMES[P_FLOW_END], 0, n, -1) == 1) {
            if ((*end = wide_int(millis)) == NULL) return -1;
        }
    }
    return 0;
}

/* normalize.netflow._record_times: absolute dateTime elements (rewritten in the record as ISO text), then
 * the Python _relative_times for whichever of start/end is still open */
static PyObject *record_times(PyObject *record, PyObject *time_fields, PyObject *context, PyObject *uptime,
                              PyObject *system_init, int relative_fields) {
    PyObject *start = NULL, *end = NULL;   /* owned */
    if (absolute_times(record, time_fields, &start, &end) < 0) goto fail;
    if (start != NULL && end != NULL) return Py_BuildValue("(NN)", start, end);
    /* _relative_times reads only these elements: without any of them it has nothing to add (nor with only
     * sysUpTime ones and no uptime or system init time to add them to, IPFIX's usual case) */
    int relative = 0;
    int first = uptime == Py_None && system_init == Py_None ? R_START_DELTA : R_FIRST;
    for (int k = first; k <= R_LAST && !relative && relative_fields; k++) {
        PyObject *v = PyDict_GetItemWithError(record, NAMES[k]);
        if (v == NULL && PyErr_Occurred()) goto fail;
        relative = v != NULL && v != Py_None;
    }
    if (!relative)
        return Py_BuildValue("(NN)", start ? start : Py_NewRef(Py_None), end ? end : Py_NewRef(Py_None));
    PyObject *result = PyObject_CallFunctionObjArgs(CB_RELATIVE_TIMES, record, context, system_init,
                                                    start ? start : Py_None, end ? end : Py_None, NULL);
    Py_XDECREF(start); Py_XDECREF(end);
    return result;
fail:
    Py_XDECREF(start); Py_XDECREF(end);
    return NULL;
}

/* a FlowPlan's and an ExportContext's attributes, read once per data set */
#define PLAN_ATTRS 11
typedef struct {
    PyObject *plan[PLAN_ATTRS];
    PyObject *ctx[6];
    int relative_fields;   /* 0 when the records have none of _relative_times' elements (known from the layout) */
} SetAttrs;

static void set_attrs_clear(SetAttrs *a) {
    for (int i = 0; i < PLAN_ATTRS; i++) Py_CLEAR(a->plan[i]);
    for (int i = 0; i < 6; i++) Py_CLEAR(a->ctx[i]);
}

static int set_attrs_read(SetAttrs *a, PyObject *plan, PyObject *context) {
    memset(a, 0, sizeof(*a));
    a->relative_fields = 1;
    for (int i = 0; i < PLAN_ATTRS; i++)
        if ((a->plan[i] = PyObject_GetAttr(plan, NAMES[A_SRC + i])) == NULL) { set_attrs_clear(a); return -1; }
    for (int i = 0; i < 6; i++)
        if ((a->ctx[i] = PyObject_GetAttr(context, NAMES[A_EXPORT_MS + i])) == NULL) { set_attrs_clear(a); return -1; }
    return 0;
}

/* A flow record's ECS values, as normalize.netflow.flow_document computes them: the document writer and the
 * bulk-line writer both start from these. */
typedef struct {
    PyObject *src_ip, *dst_ip, *src_port, *dst_port, *protocol;   /* borrowed from the record; NULL: none */
    long long proto;                 /* 0..255; -1: none */
    int start_set, end_set;          /* 0: none, 1: in *_ms, 2: in *_obj (beyond 64 bits) */
    long long start_ms, end_ms;
    PyObject *start_obj, *end_obj;   /* owned */
    int duration_set;                /* 0: none, 1: duration_ns, 2: duration_obj */
    long long duration_ns;
    PyObject *duration_obj;          /* owned */
    PyObject *bytes, *packets;       /* owned; NULL: none */
    PyObject *counters[4];           /* owned biflow source.bytes, source.packets, destination.bytes, .packets */
    PyObject *direction;             /* borrowed */
    int have_ids;                    /* Community ID in digest; else flow_id holds flow.id */
    unsigned char digest[20];
    PyObject *flow_id;               /* owned */
    PyObject *ingress, *egress;      /* borrowed ints; NULL: none */
} FlowEcs;

static void flow_ecs_clear(FlowEcs *e) {
    Py_CLEAR(e->start_obj); Py_CLEAR(e->end_obj); Py_CLEAR(e->duration_obj);
    Py_CLEAR(e->bytes); Py_CLEAR(e->packets); Py_CLEAR(e->flow_id);
    for (int i = 0; i < 4; i++) Py_CLEAR(e->counters[i]);
}

/* a start or end from _record_times/_relative_times (an int, or None) */
static void flow_ecs_time(PyObject *value, int *set, long long *ms, PyObject **obj) {
    if (value == Py_None) return;
    if (small_int(value, ms)) { *set = 1; return; }
    PyErr_Clear();
    *set = 2;
    *obj = Py_NewRef(value);
}

/* event.duration from start and end (not 64-bit, or far apart: Python's ints decide) */
static int flow_ecs_duration(FlowEcs *e, PyObject *start, PyObject *end) {
    long long span;
    if (e->start_set == 1 && e->end_set == 1 && !__builtin_sub_overflow(e->end_ms, e->start_ms, &span)) {
        if (span >= 0 && span <= LLONG_MAX / 1000000LL) { e->duration_set = 1; e->duration_ns = span * 1000000LL; }
        return 0;
    }
    PyObject *diff = PyNumber_Subtract(end, start);
    if (diff == NULL) return -1;
    int zero_or_more = PyObject_RichCompareBool(end, start, Py_GE);
    int fits = zero_or_more > 0 ? PyObject_RichCompareBool(diff, MAX_DURATION_OBJ, Py_LE) : 0;
    if (zero_or_more < 0 || fits < 0) { Py_DECREF(diff); return -1; }
    if (fits) {
        e->duration_obj = PyNumber_Multiply(diff, SMALL_NS);
        e->duration_set = 2;
    }
    Py_DECREF(diff);
    return fits && e->duration_obj == NULL ? -1 : 0;
}

/* 0 with e filled, 1 when the record needs the Python path (decided before the record is changed), -1 on error;
 * flow_ecs_clear(e) either way */
static int flow_ecs(FlowEcs *e, PyObject *record, PyObject *context, const SetAttrs *attrs, PyObject *rate,
                    int renormalize, PyObject *time_fields, PyObject *system_init) {
    PyObject *const *plan_attr = attrs->plan, *const *ctx_attr = attrs->ctx;
    PyObject *export_ms = ctx_attr[0], *uptime = ctx_attr[1], *exporter = ctx_attr[3];
    memset(e, 0, sizeof(*e));
    e->proto = -1;

    /* --- everything that may send the record to the Python path is decided before anything is changed --- */
    PyObject *src_ip = pick(record, plan_attr[0]);
    PyObject *dst_ip = src_ip || !PyErr_Occurred() ? pick(record, plan_attr[1]) : NULL;
    PyObject *src_port = !PyErr_Occurred() ? pick(record, plan_attr[2]) : NULL;
    PyObject *dst_port = !PyErr_Occurred() ? pick(record, plan_attr[3]) : NULL;
    PyObject *protocol = !PyErr_Occurred() ? PyDict_GetItemWithError(record, NAMES[F_PROTOCOL]) : NULL;
    if (PyErr_Occurred()) return -1;
    if ((src_ip && !PyUnicode_CheckExact(src_ip)) || (dst_ip && !PyUnicode_CheckExact(dst_ip))) return 1;
    if (src_ip && !is_address_text(src_ip)) src_ip = NULL;
    if (dst_ip && !is_address_text(dst_ip)) dst_ip = NULL;
    long long number;
    if (protocol && small_int(protocol, &number)) {
        if (number < 0) return 1;
        if (number <= 255) e->proto = number;
    }
    PyErr_Clear();
    if (src_port && !PyLong_CheckExact(src_port)) src_port = NULL;
    if (dst_port && !PyLong_CheckExact(dst_port)) dst_port = NULL;
    unsigned long long sport = 0, dport = 0;
    if ((src_port && as_u64(src_port, &sport) < 0) || (dst_port && as_u64(dst_port, &dport) < 0)) {
        PyErr_Clear();
        return 1;
    }
    /* forward and (biflow) reverse counters; a bool among them is an int to isinstance only: Python decides */
    int biflow = PyObject_IsTrue(plan_attr[6]);
    static const int counter_plan[4] = {A_FWD_BYTES, A_FWD_PACKETS, A_REV_BYTES, A_REV_PACKETS};
    PyObject *counter[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < (biflow ? 4 : 2) && !PyErr_Occurred(); i++) counter[i] = pick(record, plan_attr[counter_plan[i]]);
    if (PyErr_Occurred()) return -1;
    for (int i = 0; i < 4; i++)
        if (counter[i] && PyLong_Check(counter[i]) && !PyLong_CheckExact(counter[i])) return 1;
    int times_ok = time_values_fit(record, time_fields);
    if (times_ok <= 0) return times_ok == 0 ? 1 : -1;
    int uptime_only = PyObject_IsTrue(plan_attr[8]) && uptime != Py_None;
    PyObject *start_up = NULL, *end_up = NULL;
    long long sv = 0, ev = 0, up = 0, xm = 0;
    if (uptime_only) {
        start_up = PyDict_GetItemWithError(record, NAMES[F_START_UP]);
        end_up = start_up || !PyErr_Occurred() ? PyDict_GetItemWithError(record, NAMES[F_END_UP]) : NULL;
        if (PyErr_Occurred()) return -1;
        if (start_up && end_up && PyLong_CheckExact(start_up) && PyLong_CheckExact(end_up)) {
            if (!small_int(start_up, &sv) || !small_int(end_up, &ev) || !small_int(uptime, &up) ||
                !small_int(export_ms, &xm)) {
                PyErr_Clear();   /* values beyond 64 bits: Python's arbitrary-precision path does the sums */
                return 1;
            }
        } else {
            start_up = NULL;
        }
    }
    e->src_ip = src_ip; e->dst_ip = dst_ip; e->src_port = src_port; e->dst_port = dst_port;
    e->protocol = protocol;

    /* --- event times (the absolute dateTime elements are rewritten in the record as ISO text) --- */
    if (uptime_only) {
        if (start_up) {
            uint32_t sb = (uint32_t)((unsigned long long)up - (unsigned long long)sv);
            uint32_t eb = (uint32_t)((unsigned long long)up - (unsigned long long)ev);
            e->start_ms = xm - (sb < 0x80000000u ? (long long)sb : (long long)sb - 4294967296LL);
            e->end_ms = xm - (eb < 0x80000000u ? (long long)eb : (long long)eb - 4294967296LL);
            e->start_set = e->end_set = 1;
            if (e->end_ms >= e->start_ms) { e->duration_set = 1; e->duration_ns = (e->end_ms - e->start_ms) * 1000000LL; }
        }
    } else if (PyObject_IsTrue(plan_attr[7])) {
        PyObject *times = record_times(record, time_fields, context, uptime, system_init, attrs->relative_fields);
        if (times == NULL) return -1;
        if (!PyTuple_Check(times) || PyTuple_GET_SIZE(times) != 2) {
            Py_DECREF(times);
            PyErr_SetString(PyExc_TypeError, "_relative_times must return (start, end)");
            return -1;
        }
        PyObject *start = PyTuple_GET_ITEM(times, 0), *end = PyTuple_GET_ITEM(times, 1);
        flow_ecs_time(start, &e->start_set, &e->start_ms, &e->start_obj);
        flow_ecs_time(end, &e->end_set, &e->end_ms, &e->end_obj);
        int rc = e->start_set && e->end_set ? flow_ecs_duration(e, start, end) : 0;
        Py_DECREF(times);
        if (rc < 0) return -1;
    }

    /* --- counters, direction --- */
    int scale_is_one = !renormalize;
    if (renormalize && (scale_is_one = PyObject_RichCompareBool(rate, ONE, Py_EQ)) < 0) return -1;
    PyObject *scale = renormalize ? rate : ONE;
    /* biflow (RFC 5103 reverse elements, NSEL initiator/responder): each side's counters, clamped, and the
     * network totals of both */
    PyObject *total[2] = {Py_XNewRef(counter[0]), Py_XNewRef(counter[1])};
    for (int i = 0; biflow && i < 4; i++) {
        if (counter[i] == NULL || !PyLong_CheckExact(counter[i])) continue;
        if ((e->counters[i] = scaled(counter[i], scale, 0)) == NULL) goto counters_failed;
        if (i < 2) continue;
        PyObject *forward = counter[i - 2] && PyLong_CheckExact(counter[i - 2]) ? counter[i - 2] : SMALL_ZERO;
        PyObject *sum = PyNumber_Add(forward, counter[i]);
        if (sum == NULL) goto counters_failed;
        Py_XSETREF(total[i - 2], sum);
    }
    /* a biflow's totals are sums, clamped like renormalised counters: two raw u64 halves may sum past 64 bits */
    int keep_raw = biflow ? 0 : scale_is_one;
    if (total[0] && PyLong_CheckExact(total[0]) && (e->bytes = scaled(total[0], scale, keep_raw)) == NULL)
        goto counters_failed;
    if (total[1] && PyLong_CheckExact(total[1]) && (e->packets = scaled(total[1], scale, keep_raw)) == NULL)
        goto counters_failed;
    Py_XDECREF(total[0]); Py_XDECREF(total[1]);
    PyObject *direction_key = PyDict_GetItemWithError(record, NAMES[F_FLOW_DIRECTION]);
    if (direction_key == NULL && PyErr_Occurred()) return -1;
    e->direction = PyDict_GetItemWithError(DIRECTIONS, direction_key ? direction_key : Py_None);
    if (e->direction == NULL) {
        if (PyErr_Occurred()) return -1;
        e->direction = KEYS[V_UNKNOWN];
    }

    /* --- Community ID, and flow.id from its hash --- */
    if (src_ip && dst_ip && e->proto >= 0) {
        long long proto = e->proto;
        unsigned long long a = sport, b = dport;
        int usable = 1;
        if (proto == 1 || proto == 58) {
            PyObject *code = first_of(record, F_TC4, F_TC6);
            if (code == NULL && PyErr_Occurred()) return -1;
            usable = 0;
            if (code == NULL) {
                PyObject *type = first_of(record, F_T4, F_T6);
                if (type == NULL && PyErr_Occurred()) return -1;
                if (type && PyLong_CheckExact(type)) {
                    PyObject *icmp_code = first_of(record, F_C4, F_C6);
                    if (icmp_code == NULL && PyErr_Occurred()) return -1;
                    a = PyLong_AsUnsignedLongLongMask(type) & 0xFF;
                    b = icmp_code && PyLong_CheckExact(icmp_code) ? PyLong_AsUnsignedLongLongMask(icmp_code) & 0xFF : 0;
                    usable = 1;
                } else {
                    code = dst_port;
                }
            }
            if (!usable && code && PyLong_CheckExact(code)) {
                unsigned long long bits = PyLong_AsUnsignedLongLongMask(code);
                a = (bits >> 8) & 0xFF; b = bits & 0xFF;
                usable = 1;
            }
            if (PyErr_Occurred()) return -1;
        }
        if (usable) {
            unsigned char pa[16], pb[16];
            size_t la = pack_text(src_ip, pa), lb = pack_text(dst_ip, pb);
            if (la && la == lb) {
                community_raw(pa, pb, la, (int)proto, a, b, 0, e->digest);
                e->have_ids = 1;
            }
        }
    }
    if (!e->have_ids) {
        e->flow_id = PyObject_CallFunctionObjArgs(CB_FLOW_ID, exporter, src_ip ? src_ip : Py_None,
                                                  dst_ip ? dst_ip : Py_None, e->proto >= 0 ? protocol : Py_None,
                                                  src_port ? src_port : Py_None, dst_port ? dst_port : Py_None, NULL);
        if (e->flow_id == NULL) return -1;
    }
    e->ingress = PyDict_GetItemWithError(record, NAMES[F_INGRESS]);
    e->egress = PyErr_Occurred() ? NULL : PyDict_GetItemWithError(record, NAMES[F_EGRESS]);
    if (PyErr_Occurred()) return -1;
    if (e->ingress && !PyLong_CheckExact(e->ingress)) e->ingress = NULL;
    if (e->egress && !PyLong_CheckExact(e->egress)) e->egress = NULL;
    return 0;
counters_failed:
    Py_XDECREF(total[0]); Py_XDECREF(total[1]);
    return -1;
}

static int is_ipv6_text(PyObject *ip) { return PyUnicode_FindChar(ip, ':', 0, PyUnicode_GET_LENGTH(ip), 1) >= 0; }

static PyObject *ecs_time_text(int set, long long ms, PyObject *obj) { return set == 1 ? iso_ms(ms) : iso_any(obj); }

/* the document of flow_ecs's values: flow_document's keys, in its order; the record becomes its netflow object */
static PyObject *flow_ecs_document(const FlowEcs *e, PyObject *record, const SetAttrs *attrs, PyObject *doc_id,
                                   PyObject *action, PyObject *rate, PyObject *interfaces) {
    PyObject *const *ctx_attr = attrs->ctx;
    PyObject *timestamp = ctx_attr[2], *exporter = ctx_attr[3], *tag = ctx_attr[4], *exporter_fields = ctx_attr[5];
    PyObject *doc = _PyDict_NewPresized(9), *event = _PyDict_NewPresized(7), *network = _PyDict_NewPresized(7);
    PyObject *source = PyDict_New(), *destination = PyDict_New(), *observer = PyDict_New(), *flow = PyDict_New();
    PyObject *result = NULL;
    if (!doc || !event || !network || !source || !destination || !observer || !flow) goto done;
    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        PyDict_SetItem(event, KEYS[K_CATEGORY], CATEGORY) < 0 ||
        PyDict_SetItem(event, KEYS[K_TYPE], CONNECTION) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], action) < 0) goto done;
    if (e->start_set && set_steal(event, K_START, ecs_time_text(e->start_set, e->start_ms, e->start_obj)) < 0) goto done;
    if (e->end_set && set_steal(event, K_END, ecs_time_text(e->end_set, e->end_ms, e->end_obj)) < 0) goto done;
    if (e->duration_set && set_steal(event, K_DURATION, e->duration_set == 1 ? PyLong_FromLongLong(e->duration_ns)
                                                                              : Py_NewRef(e->duration_obj)) < 0)
        goto done;
    if (PyDict_SetItem(doc, KEYS[K_ID], doc_id) < 0 || PyDict_SetItem(doc, KEYS[K_TIMESTAMP], timestamp) < 0 ||
        PyDict_SetItem(doc, KEYS[K_EVENT], event) < 0 || PyDict_SetItem(doc, KEYS[K_NETWORK], network) < 0)
        goto done;
    if (e->src_ip) {
        if (PyDict_SetItem(source, KEYS[K_IP], e->src_ip) < 0 ||
            PyDict_SetItem(network, KEYS[K_TYPE], is_ipv6_text(e->src_ip) ? NAMES[V_IPV6] : KEYS[V_IPV4]) < 0)
            goto done;
    }
    if (e->dst_ip) {
        if (PyDict_SetItem(destination, KEYS[K_IP], e->dst_ip) < 0) goto done;
        if (!e->src_ip &&
            PyDict_SetItem(network, KEYS[K_TYPE], is_ipv6_text(e->dst_ip) ? NAMES[V_IPV6] : KEYS[V_IPV4]) < 0)
            goto done;
    }
    if (e->src_port && PyDict_SetItem(source, KEYS[K_PORT], e->src_port) < 0) goto done;
    if (e->dst_port && PyDict_SetItem(destination, KEYS[K_PORT], e->dst_port) < 0) goto done;
    for (int i = 0; i < 4; i++)
        if (e->counters[i] && PyDict_SetItem(i < 2 ? source : destination, KEYS[i % 2 ? K_PACKETS : K_BYTES],
                                             e->counters[i]) < 0) goto done;
    if (e->proto >= 0) {
        if (PyDict_SetItem(network, KEYS[K_IANA], SMALL_TEXT[e->proto]) < 0) goto done;
        if (TRANSPORT[e->proto] && PyDict_SetItem(network, KEYS[K_TRANSPORT], TRANSPORT[e->proto]) < 0) goto done;
    }
    if ((e->bytes && PyDict_SetItem(network, KEYS[K_BYTES], e->bytes) < 0) ||
        (e->packets && PyDict_SetItem(network, KEYS[K_PACKETS], e->packets) < 0) ||
        PyDict_SetItem(network, KEYS[K_DIRECTION], e->direction) < 0) goto done;
    if (e->have_ids && set_steal(network, K_COMMUNITY, community_text(e->digest)) < 0) goto done;
    if (PyDict_SetItem(observer, KEYS[K_IP], exporter) < 0 ||
        (e->ingress && set_steal(observer, K_INGRESS, interface_named(e->ingress, interfaces)) < 0) ||
        (e->egress && set_steal(observer, K_EGRESS, interface_named(e->egress, interfaces)) < 0) ||
        PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        (PyDict_GET_SIZE(source) && PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0) ||
        (PyDict_GET_SIZE(destination) && PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) ||
        PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, e->have_ids ? flow_id_text(tag, e->digest) : Py_NewRef(e->flow_id)) < 0 ||
        PyDict_SetItem(doc, KEYS[K_FLOW], flow) < 0 ||
        PyDict_SetItem(record, KEYS[K_EXPORTER], exporter_fields) < 0 ||
        PyDict_SetItem(doc, KEYS[K_NETFLOW], record) < 0) goto done;
    PyObject *tree[] = {record, event, network, source, destination, observer, flow, doc};
    for (int i = 0; i < 8; i++) untrack(tree[i]);
    result = doc;
    doc = NULL;
done:
    Py_XDECREF(doc); Py_XDECREF(event); Py_XDECREF(network); Py_XDECREF(source); Py_XDECREF(destination);
    Py_XDECREF(observer); Py_XDECREF(flow);
    return result;
}

/* one flow document, or None (the record needs the Python path; nothing was changed), NULL on error */
static PyObject *flow_document_from(PyObject *record, PyObject *context, const SetAttrs *attrs, PyObject *doc_id,
                                    PyObject *action, PyObject *rate, int renormalize, PyObject *time_fields,
                                    PyObject *interfaces, PyObject *system_init) {
    FlowEcs e;
    int rc = flow_ecs(&e, record, context, attrs, rate, renormalize, time_fields, system_init);
    PyObject *doc = rc < 0 ? NULL : rc ? Py_NewRef(Py_None)
                                       : flow_ecs_document(&e, record, attrs, doc_id, action, rate, interfaces);
    flow_ecs_clear(&e);
    return doc;
}

/* flow_documents(records, context, id_prefix, action, sampling_rate, renormalize, plan, time_fields, interfaces,
 * system_init_ms) -> list: a document per record (ids id_prefix + index), None where the Python path must go;
 * sampling_rate is one rate for all, or a list of one per record */
#define FLOW_ARGS "O!OUUOpOOOO"
#define FLOW_ARG_POINTERS \
    &PyList_Type, &records, &context, &prefix, &action, &rate, &renormalize, &plan, &time_fields, &interfaces, \
        &system_init

static PyObject *record_rate(PyObject *rate, Py_ssize_t i) {
    return PyList_Check(rate) && i < PyList_GET_SIZE(rate) ? PyList_GET_ITEM(rate, i) : rate;
}

static PyObject *py_flow_documents(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init;
    int renormalize;
    if (!PyArg_ParseTuple(args, FLOW_ARGS, FLOW_ARG_POINTERS)) return NULL;
    if (CB_RELATIVE_TIMES == NULL) { PyErr_SetString(PyExc_RuntimeError, "configure() not called"); return NULL; }
    SetAttrs attrs;
    if (set_attrs_read(&attrs, plan, context) < 0) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(records);
    PyObject *documents = PyList_New(count);
    for (Py_ssize_t i = 0; documents != NULL && i < count; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        PyObject *doc = NULL, *doc_id = NULL;
        if (!PyDict_CheckExact(record)) {
            doc = Py_NewRef(Py_None);
        } else if ((doc_id = indexed_id(prefix, i)) != NULL) {
            doc = flow_document_from(record, context, &attrs, doc_id, action, record_rate(rate, i), renormalize,
                                     time_fields, interfaces, system_init);
            Py_DECREF(doc_id);
        }
        if (doc == NULL) { Py_CLEAR(documents); break; }
        PyList_SET_ITEM(documents, i, doc);
    }
    set_attrs_clear(&attrs);
    return documents;
}

static int jb_ecs_time(JsonBuf *b, int set, long long ms, PyObject *obj) {
    if (set == 1) return jb_iso_ms(b, ms);
    PyObject *text = iso_any(obj);
    if (text == NULL) return -1;
    int rc = jb_pyvalue(b, text, 0);
    Py_DECREF(text);
    return rc;
}

/* observer.<ingress|egress>: {"interface":{"id":"<index>"[,"name":<its name from options data>]}} */
static int jb_ecs_interface(JsonBuf *b, PyObject *index, PyObject *names) {
    PyObject *name = NULL;
    if (names != Py_None && PyDict_Check(names) && PyDict_GET_SIZE(names)) {
        name = PyDict_GetItemWithError(names, index);
        if (name == NULL && PyErr_Occurred()) return -1;
        if (name == Py_None) name = NULL;
    }
    TRY(JB_LIT(b, "{\"interface\":{\"id\":\""));
    TRY(jb_pyint(b, index));
    if (name != NULL) {
        TRY(JB_LIT(b, "\",\"name\":"));
        TRY(jb_pyvalue(b, name, 0));
        return JB_LIT(b, "}}");
    }
    return JB_LIT(b, "\"}}");
}

/* "key": (a literal) with the comma before every member but an object's first */
static int jb_key(JsonBuf *b, int *first, const char *quoted_key, Py_ssize_t n) {
    if (!*first && jb_char(b, ',') < 0) return -1;
    *first = 0;
    return jb_put(b, quoted_key, n);
}
#define JB_KEY(b, first, key) jb_key((b), (first), "\"" key "\":", (Py_ssize_t)sizeof("\"" key "\":") - 1)

/* ,"source":{"ip":..,"port":..,"bytes":..,"packets":..} with the members there are; nothing without any */
static int jb_ecs_endpoint(JsonBuf *b, const char *name, PyObject *ip, PyObject *port, PyObject *const counters[2]) {
    if (!ip && !port && !counters[0] && !counters[1]) return 0;
    int first = 1;
    TRY(jb_char(b, ','));
    TRY(jb_text(b, name, (Py_ssize_t)strlen(name)));
    TRY(JB_LIT(b, ":{"));
    if (ip) { TRY(JB_KEY(b, &first, "ip")); TRY(jb_pystr(b, ip)); }
    if (port) { TRY(JB_KEY(b, &first, "port")); TRY(jb_pyint(b, port)); }
    if (counters[0]) { TRY(JB_KEY(b, &first, "bytes")); TRY(jb_pyint(b, counters[0])); }
    if (counters[1]) { TRY(JB_KEY(b, &first, "packets")); TRY(jb_pyint(b, counters[1])); }
    return jb_char(b, '}');
}

/* the bulk lines of flow_ecs's values (flow_ecs_document's, serialised) up to the netflow object's members,
 * `"netflow":{` included; 0, 1 when a value is not one orjson writes this way (the caller makes the document
 * instead), -1 on error */
static int flow_ecs_bulk_head(JsonBuf *b, const FlowEcs *e, const BulkShared *s, Py_ssize_t index, PyObject *rate,
                              PyObject *interfaces) {
    TRY(bulk_action(b, s, index));
    TRY(jb_piece(b, s, SEG_HEAD));
    if (e->start_set) { TRY(JB_LIT(b, ",\"start\":")); TRY(jb_ecs_time(b, e->start_set, e->start_ms, e->start_obj)); }
    if (e->end_set) { TRY(JB_LIT(b, ",\"end\":")); TRY(jb_ecs_time(b, e->end_set, e->end_ms, e->end_obj)); }
    if (e->duration_set) {
        TRY(JB_LIT(b, ",\"duration\":"));
        TRY(e->duration_set == 1 ? jb_i64(b, e->duration_ns) : jb_pyvalue(b, e->duration_obj, 0));
    }
    TRY(JB_LIT(b, "},\"network\":{"));
    int first = 1;
    PyObject *typed = e->src_ip ? e->src_ip : e->dst_ip;
    if (typed) { TRY(JB_KEY(b, &first, "type")); TRY(is_ipv6_text(typed) ? JB_LIT(b, "\"ipv6\"") : JB_LIT(b, "\"ipv4\"")); }
    if (e->proto >= 0) {
        TRY(JB_KEY(b, &first, "iana_number"));
        TRY(jb_char(b, '"')); TRY(jb_u64(b, (unsigned long long)e->proto)); TRY(jb_char(b, '"'));
        const char *transport = TRANSPORT_TEXT[e->proto];
        if (transport) { TRY(JB_KEY(b, &first, "transport")); TRY(jb_text(b, transport, (Py_ssize_t)strlen(transport))); }
    }
    if (e->bytes) { TRY(JB_KEY(b, &first, "bytes")); TRY(jb_pyint(b, e->bytes)); }
    if (e->packets) { TRY(JB_KEY(b, &first, "packets")); TRY(jb_pyint(b, e->packets)); }
    TRY(JB_KEY(b, &first, "direction"));
    TRY(jb_pyvalue(b, e->direction, 0));
    if (e->have_ids) { TRY(JB_LIT(b, ",\"community_id\":")); TRY(jb_community(b, e->digest)); }
    TRY(JB_LIT(b, "},"));
    TRY(jb_piece(b, s, SEG_OBSERVER));
    if (e->ingress) { TRY(JB_LIT(b, ",\"ingress\":")); TRY(jb_ecs_interface(b, e->ingress, interfaces)); }
    if (e->egress) { TRY(JB_LIT(b, ",\"egress\":")); TRY(jb_ecs_interface(b, e->egress, interfaces)); }
    TRY(jb_char(b, '}'));
    TRY(jb_ecs_endpoint(b, "source", e->src_ip, e->src_port, e->counters));
    TRY(jb_ecs_endpoint(b, "destination", e->dst_ip, e->dst_port, e->counters + 2));
    TRY(JB_LIT(b, ",\"flow\":{\"sampling_rate\":"));
    TRY(jb_pyvalue(b, rate, 0));
    if (e->have_ids) {
        TRY(jb_piece(b, s, SEG_FLOW));
        TRY(jb_flow_id_tail(b, e->digest));
    } else {
        TRY(JB_LIT(b, ",\"id\":"));
        TRY(jb_pyvalue(b, e->flow_id, 0));
        TRY(jb_char(b, '}'));
    }
    return JB_LIT(b, ",\"netflow\":{");
}

/* flow_ecs_bulk_head, then the record's members and its exporter object */
static int flow_ecs_bulk(JsonBuf *b, const FlowEcs *e, PyObject *record, const BulkShared *s, Py_ssize_t index,
                         PyObject *rate, PyObject *interfaces) {
    PyObject *exporter_key = PyDict_GetItemWithError(record, KEYS[K_EXPORTER]);
    if (exporter_key != NULL) return 1;   /* a field of that name: the document replaces it in place */
    if (PyErr_Occurred()) return -1;
    TRY(flow_ecs_bulk_head(b, e, s, index, rate, interfaces));
    TRY(jb_pydict_items(b, record, 0));
    if (PyDict_GET_SIZE(record)) TRY(jb_char(b, ','));
    return jb_piece(b, s, SEG_TAIL);
}

typedef struct {
    const FlowEcs *e;
    PyObject *record, *prefix, *action, *rate, *interfaces;
    const SetAttrs *attrs;
    Py_ssize_t index;
} FlowItem;

static PyObject *flow_item_document(void *arg) {
    const FlowItem *item = arg;
    PyObject *doc_id = indexed_id(item->prefix, item->index);
    if (doc_id == NULL) return NULL;
    PyObject *doc = flow_ecs_document(item->e, item->record, item->attrs, doc_id, item->action, item->rate,
                                      item->interfaces);
    Py_DECREF(doc_id);
    return doc;
}

/* flow_bulk(<flow_documents' arguments>, action_head, keep_ids) -> list: per record its bulk lines (bytes), its
 * document (dict: a value orjson writes differently, flowsink.bulk encodes it), or None (the Python path) */
static PyObject *py_flow_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init, *head;
    int renormalize, keep_ids;
    if (!PyArg_ParseTuple(args, FLOW_ARGS "O!p", FLOW_ARG_POINTERS, &PyBytes_Type, &head, &keep_ids)) return NULL;
    if (CB_RELATIVE_TIMES == NULL) { PyErr_SetString(PyExc_RuntimeError, "configure() not called"); return NULL; }
    SetAttrs attrs;
    if (set_attrs_read(&attrs, plan, context) < 0) return NULL;
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    int shared = bulk_shared_begin(&s, head, keep_ids, attrs.ctx[2], prefix, CATEGORY, CONNECTION, action,
                                   attrs.ctx[3], attrs.ctx[4], attrs.ctx[5]);
    if (shared < 0 || (out = PyList_New(0)) == NULL || jb_init(&b, 4096) < 0) { Py_CLEAR(out); goto done; }
    Py_ssize_t count = PyList_GET_SIZE(records);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *item_rate = record_rate(rate, i);
        FlowEcs e;
        int rc = PyDict_CheckExact(record) ? flow_ecs(&e, record, context, &attrs, item_rate, renormalize,
                                                      time_fields, system_init)
                                           : (memset(&e, 0, sizeof(e)), 1);
        if (rc == 1) {   /* untouched: the Python path makes the document */
            flow_ecs_clear(&e);
            if (PyList_Append(out, Py_None) < 0) { Py_CLEAR(out); goto done; }
            continue;
        }
        if (rc == 0) {
            rc = shared == 0 ? flow_ecs_bulk(&b, &e, record, &s, i, item_rate, interfaces) : 1;
            FlowItem item = {&e, record, prefix, action, item_rate, interfaces, &attrs, i};
            if (rc >= 0) rc = bulk_append(out, &b, rc, flow_item_document, &item);
        }
        flow_ecs_clear(&e);
        if (rc < 0) { Py_CLEAR(out); goto done; }
    }
done:
    bulk_shared_free(&s);
    jb_free(&b);
    set_attrs_clear(&attrs);
    return out;
}

/* one options record's bulk lines: options_document's keys, in its order; 0, 1, -1 */
static int options_bulk_one(JsonBuf *b, PyObject *record, const BulkShared *s, Py_ssize_t index) {
    TRY(bulk_action(b, s, index));
    TRY(jb_piece(b, s, SEG_HEAD));
    TRY(JB_LIT(b, "},"));
    TRY(jb_piece(b, s, SEG_OBSERVER));
    TRY(JB_LIT(b, "},\"netflow\":{"));
    TRY(jb_pydict_items(b, record, 0));
    if (PyDict_GET_SIZE(record)) TRY(jb_char(b, ','));
    return jb_piece(b, s, SEG_TAIL);
}

/* options_bulk(records, context, id_prefix, time_fields, action_head, keep_ids) -> list: per options record its
 * bulk lines (normalize.netflow.options_document, serialised), or None where the Python path must write it (its
 * dateTime elements are already ISO text then, which options_document leaves as they are) */
static PyObject *py_options_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *time_fields, *head;
    int keep_ids;
    if (!PyArg_ParseTuple(args, "O!OUO!O!p", &PyList_Type, &records, &context, &prefix, &PyTuple_Type, &time_fields,
                          &PyBytes_Type, &head, &keep_ids))
        return NULL;
    PyObject *ctx[4] = {NULL, NULL, NULL, NULL};   /* timestamp, exporter, exporter_tag, exporter_fields */
    static const int names[4] = {A_TIMESTAMP, A_EXPORTER, A_EXPORTER_TAG, A_EXPORTER_FIELDS};
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 4; i++)
        if ((ctx[i] = PyObject_GetAttr(context, NAMES[names[i]])) == NULL) goto done;
    int shared = bulk_shared_begin(&s, head, keep_ids, ctx[0], prefix, CATEGORY, INFO_TYPE, NAMES[V_OPTIONS],
                                   ctx[1], ctx[2], ctx[3]);
    s.kind = "meta";
    if (shared < 0 || (out = PyList_New(0)) == NULL || jb_init(&b, 2048) < 0) { Py_CLEAR(out); goto done; }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *line = NULL;
        int rc = shared;
        if (rc == 0 && PyDict_CheckExact(record)) {
            PyObject *exporter_key = PyDict_GetItemWithError(record, KEYS[K_EXPORTER]);
            rc = exporter_key != NULL ? 1 : PyErr_Occurred() ? -1 : time_values_fit(record, time_fields) == 1 ? 0 : 1;
            if (PyErr_Occurred()) rc = -1;
            if (rc == 0) rc = absolute_times(record, time_fields, NULL, NULL);
            if (rc == 0) rc = options_bulk_one(&b, record, &s, i);
        } else {
            rc = rc < 0 ? rc : 1;
        }
        if (rc < 0) { Py_CLEAR(out); goto done; }
        if (rc == 0 && (line = jb_take(&b, 0)) == NULL) { Py_CLEAR(out); goto done; }
        b.len = 0;
        int added = PyList_Append(out, line ? line : Py_None);
        Py_XDECREF(line);
        if (added < 0) { Py_CLEAR(out); goto done; }
    }
done:
    for (int i = 0; i < 4; i++) Py_XDECREF(ctx[i]);
    bulk_shared_free(&s);
    jb_free(&b);
    return out;
}

static PyObject *py_configure(PyObject *Py_UNUSED(self), PyObject *kwargs_unused) {
    PyObject *record_times, *iso, *flow_id, *directions, *category, *connection, *max_long, *max_duration;
    if (!PyArg_ParseTuple(kwargs_unused, "OOOO!O!O!O!O!", &record_times, &iso, &flow_id, &PyDict_Type, &directions,
                          &PyList_Type, &category, &PyList_Type, &connection, &PyLong_Type, &max_long,
                          &PyLong_Type, &max_duration))
        return NULL;
    PyObject **slots[] = {&CB_RELATIVE_TIMES, &CB_ISO_MS, &CB_FLOW_ID, &DIRECTIONS, &CATEGORY, &CONNECTION,
                          &MAX_LONG_OBJ, &MAX_DURATION_OBJ};
    PyObject *values[] = {record_times, iso, flow_id, directions, category, connection, max_long, max_duration};
    for (int i = 0; i < 8; i++) { Py_INCREF(values[i]); Py_XSETREF(*slots[i], values[i]); }
    Py_RETURN_NONE;
}

/* ---- fixed-length template records (NetFlow v9 / IPFIX) ------------------------------------------------------ */

/* value kinds, as flowsink.decode.templates.c_layout numbers them */
enum { KIND_UNSIGNED, KIND_SIGNED, KIND_FLOAT32, KIND_FLOAT64, KIND_IPV4, KIND_IPV6, KIND_MAC, KIND_STRING,
       KIND_BOOLEAN, KIND_HEX, KIND_UNSIGNED_ANY, KIND_SIGNED_ANY, KIND_FLOAT_ANY };

/* big-endian integers of up to 8 bytes */
static unsigned long long read_unsigned(const unsigned char *p, Py_ssize_t n) {
    unsigned long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static long long read_signed(const unsigned char *p, Py_ssize_t n) {
    unsigned long long v = (n && (p[0] & 0x80)) ? ~0ULL : 0;
    for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return (long long)v;
}

/* "aa:bb:cc" text of n bytes into out[3n - 1] (nothing for 0 bytes) */
static void mac_chars(char *out, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i) *out++ = ':';
        *out++ = HEX[p[i] >> 4]; *out++ = HEX[p[i] & 15];
    }
}

static PyObject *field_value(const unsigned char *p, Py_ssize_t n, int kind) {
    switch (kind) {
    case KIND_UNSIGNED: return PyLong_FromUnsignedLongLong(read_unsigned(p, n));
    case KIND_SIGNED: return PyLong_FromLongLong(read_signed(p, n));
    case KIND_FLOAT32: {
        uint32_t bits = be32(p);
        float f;
        memcpy(&f, &bits, 4);
        return PyFloat_FromDouble((double)f);
    }
    case KIND_FLOAT64: {
        uint64_t bits = ((uint64_t)be32(p) << 32) | be32(p + 4);
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    case KIND_UNSIGNED_ANY:   /* variable-length integers: past 8 bytes hex, as templates._unsigned_variable */
        return field_value(p, n, n <= 8 ? KIND_UNSIGNED : KIND_HEX);
    case KIND_SIGNED_ANY:
        return field_value(p, n, n <= 8 ? KIND_SIGNED : KIND_HEX);
    case KIND_FLOAT_ANY:
        return field_value(p, n, n == 4 ? KIND_FLOAT32 : n == 8 ? KIND_FLOAT64 : KIND_HEX);
    case KIND_IPV4: return ipv4_text(p);
    case KIND_IPV6: {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, p, text, sizeof(text)) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return ascii_text(text, (Py_ssize_t)strlen(text));
    }
    case KIND_MAC: {
        if (n == 0) return ascii_text("", 0);
        PyObject *out = PyUnicode_New(3 * n - 1, 127);
        if (out != NULL) mac_chars((char *)PyUnicode_1BYTE_DATA(out), p, n);
        return out;
    }
    case KIND_STRING: {
        Py_ssize_t len = n;
        while (len > 0 && p[len - 1] == 0) len--;
        return PyUnicode_DecodeUTF8((const char *)p, len, "replace");
    }
    case KIND_BOOLEAN: {
        int v = n ? p[0] : 0;
        if (v == 1) Py_RETURN_TRUE;
        if (v == 2) Py_RETURN_FALSE;
        return PyLong_FromLong(v);
    }
    default: {
        PyObject *out = PyUnicode_New(2 * n, 127);
        if (out != NULL) hex_chars((char *)PyUnicode_1BYTE_DATA(out), p, n);
        return out;
    }
    }
}

/* fixed_records(data, start, count, record_length, layout) -> [record dicts]; layout: ((name, offset, length,
 * kind), ...) in template order, 0-length fields already left out (templates.Template drops them too) */
static PyObject *py_fixed_records(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, count, length;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nnnO!", &data, &start, &count, &length, &PyTuple_Type, &layout)) return NULL;
    PyObject *records = NULL;
    Py_ssize_t fields = PyTuple_GET_SIZE(layout);
    if (start < 0 || count < 0 || length <= 0 || start + count * length > data.len) {
        PyErr_SetString(PyExc_ValueError, "records beyond the data");
        goto done;
    }
    /* the layout parsed once per call; the layout is ours, but a wrong one must not read past the record */
    Py_ssize_t *spec = PyMem_Malloc(sizeof(Py_ssize_t) * 3 * (size_t)(fields ? fields : 1));
    if (spec == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t f = 0; f < fields; f++) {
        PyObject *item = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto free_spec;
        }
        Py_ssize_t offset = spec[3 * f] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 1));
        Py_ssize_t size = spec[3 * f + 1] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 2));
        spec[3 * f + 2] = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 3));
        if (PyErr_Occurred()) goto free_spec;
        if (offset < 0 || size < 0 || offset + size > length) {
            PyErr_SetString(PyExc_ValueError, "layout field outside the record");
            goto free_spec;
        }
    }
    records = PyList_New(count);
    if (records == NULL) goto free_spec;
    const unsigned char *base = (const unsigned char *)data.buf + start;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *record = _PyDict_NewPresized(fields + 1);
        if (record == NULL) { Py_CLEAR(records); goto free_spec; }
        PyList_SET_ITEM(records, r, record);
        const unsigned char *row = base + r * length;
        for (Py_ssize_t f = 0; f < fields; f++) {
            PyObject *value = field_value(row + spec[3 * f], spec[3 * f + 1], (int)spec[3 * f + 2]);
            if (value == NULL || PyDict_SetItem(record, PyTuple_GET_ITEM(PyTuple_GET_ITEM(layout, f), 0), value) < 0) {
                Py_XDECREF(value);
                Py_CLEAR(records);
                goto free_spec;
            }
            Py_DECREF(value);
        }
    }
free_spec:
    PyMem_Free(spec);
done:
    PyBuffer_Release(&data);
    return records;
}

/* variable_records(data, start, end, minimum, layout) -> (records, None | "truncated_record"); layout:
 * ((name, length or -1 for variable, kind), ...) for every field; records end where a field runs past `end`,
 * as templates.Template._decode_variable does (0-length fixed fields are left out, as it leaves them out) */
static PyObject *py_variable_records(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, end, minimum;
    PyObject *layout;
    if (!PyArg_ParseTuple(args, "y*nnnO!", &data, &start, &end, &minimum, &PyTuple_Type, &layout)) return NULL;
    PyObject *records = NULL, *error = Py_None, *result = NULL;
    Py_ssize_t fields = PyTuple_GET_SIZE(layout);
    if (start < 0 || end > data.len || minimum < 1) {
        PyErr_SetString(PyExc_ValueError, "bad bounds");
        goto done;
    }
    for (Py_ssize_t f = 0; f < fields; f++) {
        PyObject *spec = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto done;
        }
    }
    records = PyList_New(0);
    if (records == NULL) goto done;
    const unsigned char *buf = (const unsigned char *)data.buf;
    Py_ssize_t offset = start;
    while (end - offset >= minimum) {
        PyObject *record = _PyDict_NewPresized(fields);
        if (record == NULL) goto fail;
        for (Py_ssize_t f = 0; f < fields; f++) {
            PyObject *spec = PyTuple_GET_ITEM(layout, f);
            Py_ssize_t length = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
            int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 2));
            if (PyErr_Occurred()) { Py_DECREF(record); goto fail; }
            int variable = length < 0;
            if (variable) {
                if (offset >= end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
                length = buf[offset++];
                if (length == 255) {
                    if (offset + 2 > end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
                    length = (buf[offset] << 8) | buf[offset + 1];
                    offset += 2;
                }
            }
            if (offset + length > end) { Py_DECREF(record); error = KEYS[V_TRUNCATED_RECORD]; goto finish; }
            if (length > 0 || variable) {
                PyObject *value = field_value(buf + offset, length, kind);
                if (value == NULL || PyDict_SetItem(record, PyTuple_GET_ITEM(spec, 0), value) < 0) {
                    Py_XDECREF(value);
                    Py_DECREF(record);
                    goto fail;
                }
                Py_DECREF(value);
            }
            offset += length;
        }
        int rc = PyList_Append(records, record);
        Py_DECREF(record);
        if (rc < 0) goto fail;
    }
finish:
    result = Py_BuildValue("(OO)", records, error);
fail:
    Py_XDECREF(records);
done:
    PyBuffer_Release(&data);
    return result;
}

/* ---- fixed-length flow records straight to bulk lines ------------------------------------------------------- */

/* a fixed_bulk layout field's role (templates.BULK_*): the ECS values are computed from it, it is a dateTime
 * element (rewritten as ISO text), it is one of _relative_times' elements */
enum { ROLE_NEEDED = 1, ROLE_TIMED = 2, ROLE_RELATIVE = 4 };

/* one field of a fixed_bulk layout: where it is, how to read it, its `"name":` text, and whether the ECS
 * values are computed from it (it then goes through the small record dict flow_ecs reads) */
typedef struct {
    PyObject *name;
    Py_ssize_t offset, size;
    int kind, needed, timed;   /* timed: a dateTime element, rewritten in the small dict as ISO text */
    const char *key;
    Py_ssize_t key_len;
    PyObject *value;           /* needed: this record's value (borrowed from the small dict) */
} BulkField;

/* a field's value as field_value + jb_pyvalue would write it; 1 where that is not orjson's text (floats) */
static int jb_field(JsonBuf *b, const unsigned char *p, Py_ssize_t n, int kind) {
    switch (kind) {
    case KIND_UNSIGNED: return jb_u64(b, read_unsigned(p, n));
    case KIND_SIGNED: return jb_i64(b, read_signed(p, n));
    case KIND_IPV4: return jb_ipv4(b, p);
    case KIND_MAC:
        if (jb_reserve(b, 3 * n + 2) < 0) return -1;
        b->data[b->len++] = '"';
        if (n) { mac_chars(b->data + b->len, p, n); b->len += 3 * n - 1; }
        b->data[b->len++] = '"';
        return 0;
    case KIND_HEX:
        if (jb_char(b, '"') < 0 || jb_hex(b, p, n) < 0) return -1;
        return jb_char(b, '"');
    case KIND_BOOLEAN: {
        int v = n ? p[0] : 0;
        return v == 1 ? JB_LIT(b, "true") : v == 2 ? JB_LIT(b, "false") : jb_u64(b, (unsigned)v);
    }
    case KIND_STRING: {
        Py_ssize_t len = n;
        while (len > 0 && p[len - 1] == 0) len--;
        int ascii = 1;
        for (Py_ssize_t i = 0; i < len && ascii; i++) ascii = p[i] < 0x80;
        if (ascii) return jb_text(b, (const char *)p, len);
        break;   /* UTF-8 decoded with replacement, as field_value does */
    }
    default:
        break;
    }
    PyObject *value = field_value(p, n, kind);
    if (value == NULL) return -1;
    int rc = jb_pyvalue(b, value, 0);
    Py_DECREF(value);
    return rc;
}

/* the record as a dict, in layout order: the small record's (possibly rewritten) values where it has them */
static PyObject *full_record(const unsigned char *row, const BulkField *fields, Py_ssize_t count, PyObject *small) {
    PyObject *record = _PyDict_NewPresized(count + 1);
    for (Py_ssize_t f = 0; record != NULL && f < count; f++) {
        PyObject *value = fields[f].needed && small ? Py_XNewRef(PyDict_GetItemWithError(small, fields[f].name))
                                                    : field_value(row + fields[f].offset, fields[f].size, fields[f].kind);
        if (value == NULL || PyDict_SetItem(record, fields[f].name, value) < 0) Py_CLEAR(record);
        Py_XDECREF(value);
    }
    return record;
}

/* fixed_bulk(data, start, count, record_length, layout, context, id_prefix, action, sampling_rate, renormalize,
 * plan, time_fields, interfaces, system_init_ms, action_head, keep_ids) -> (items, declined, others):
 * fixed-length flow records read straight into bulk lines, without a dict per record (only the fields the ECS
 * values come from go through one). items: per record its lines (bytes), its document (dict: a value orjson
 * writes differently), or None, where the record (in declined, in order) needs the Python path; others: how many
 * items are not bytes. layout: ((name, offset, length, kind, role, b'"name":'), ...) in template order, 0-length
 * fields left out. */
static PyObject *py_fixed_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, count, length;
    PyObject *layout, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init, *head;
    int renormalize, keep_ids;
    if (!PyArg_ParseTuple(args, "y*nnnO!OUUOpOOOOO!p", &data, &start, &count, &length, &PyTuple_Type, &layout,
                          &context, &prefix, &action, &rate, &renormalize, &plan, &time_fields, &interfaces,
                          &system_init, &PyBytes_Type, &head, &keep_ids))
        return NULL;
    PyObject *items = NULL, *declined = NULL, *result = NULL, *small = NULL;
    Py_ssize_t others = 0;   /* items that are not bytes */
    BulkField *fields = NULL;
    BulkShared s;
    SetAttrs attrs;
    JsonBuf b = {NULL, 0, 0};
    int shared = -1, have_attrs = 0, named_exporter = 0, relative_fields = 0;
    Py_ssize_t n_fields = PyTuple_GET_SIZE(layout), n_needed = 0;
    memset(&s, 0, sizeof(s));
    if (CB_RELATIVE_TIMES == NULL) { PyErr_SetString(PyExc_RuntimeError, "configure() not called"); goto done; }
    if (start < 0 || count < 0 || length <= 0 || count > (data.len - start) / length || start > data.len) {
        PyErr_SetString(PyExc_ValueError, "records beyond the data");
        goto done;
    }
    if ((fields = PyMem_Calloc((size_t)(n_fields ? n_fields : 1), sizeof(BulkField))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t f = 0; f < n_fields; f++) {   /* ours, but a wrong one must not read past the record */
        PyObject *spec = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 6 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(spec, 5))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto done;
        }
        BulkField *field = &fields[f];
        field->name = PyTuple_GET_ITEM(spec, 0);
        field->offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        field->size = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 2));
        field->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
        long role = PyLong_AsLong(PyTuple_GET_ITEM(spec, 4));
        field->needed = (role & ROLE_NEEDED) != 0;
        field->timed = (role & ROLE_TIMED) != 0;
        relative_fields |= (role & ROLE_RELATIVE) != 0;
        field->key = PyBytes_AS_STRING(PyTuple_GET_ITEM(spec, 5));
        field->key_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(spec, 5));
        if (PyErr_Occurred()) goto done;
        if (field->offset < 0 || field->size < 0 || field->offset > length - field->size) {
            PyErr_SetString(PyExc_ValueError, "layout field outside the record");
            goto done;
        }
        n_needed += field->needed;
        /* a field of that name: the document replaces it in place, the Python path writes such records */
        if (PyUnicode_Compare(field->name, KEYS[K_EXPORTER]) == 0) named_exporter = 1;
    }
    if (set_attrs_read(&attrs, plan, context) < 0) goto done;
    have_attrs = 1;
    attrs.relative_fields = relative_fields;
    shared = bulk_shared_begin(&s, head, keep_ids, attrs.ctx[2], prefix, CATEGORY, CONNECTION, action, attrs.ctx[3],
                               attrs.ctx[4], attrs.ctx[5]);
    if (shared < 0 || (items = PyList_New(count)) == NULL || (declined = PyList_New(0)) == NULL ||
        jb_init(&b, 4096) < 0)
        goto done;
    /* one dict for every record: each sets the same keys, so no record allocates or resizes one */
    if ((small = _PyDict_NewPresized(n_needed)) == NULL) goto done;
    const unsigned char *base = (const unsigned char *)data.buf + start;
    for (Py_ssize_t r = 0; r < count; r++) {
        const unsigned char *row = base + r * length;
        PyObject *item_rate = record_rate(rate, r), *item = NULL;
        FlowEcs e;
        memset(&e, 0, sizeof(e));
        int rc = 0;
        for (Py_ssize_t f = 0; rc == 0 && f < n_fields; f++) {
            if (!fields[f].needed) continue;
            PyObject *value = fields[f].value = field_value(row + fields[f].offset, fields[f].size, fields[f].kind);
            if (value == NULL || PyDict_SetItem(small, fields[f].name, value) < 0) rc = -1;
            Py_XDECREF(value);   /* the small dict holds it */
        }
        if (rc == 0) rc = flow_ecs(&e, small, context, &attrs, item_rate, renormalize, time_fields, system_init);
        if (rc == 1) {   /* untouched: the whole record goes to the Python path */
            PyObject *record = full_record(row, fields, n_fields, NULL);
            rc = record == NULL || PyList_Append(declined, record) < 0 ? -1 : 0;
            Py_XDECREF(record);
            item = rc == 0 ? Py_NewRef(Py_None) : NULL;
        } else if (rc == 0) {
            rc = shared || named_exporter ? 1 : flow_ecs_bulk_head(&b, &e, &s, r, item_rate, interfaces);
            for (Py_ssize_t f = 0; rc == 0 && f < n_fields; f++) {
                const BulkField *field = &fields[f];
                if (f && (rc = jb_char(&b, ',')) != 0) break;
                if ((rc = jb_put(&b, field->key, field->key_len)) != 0) break;
                PyObject *value = !field->needed ? NULL : field->timed ? PyDict_GetItem(small, field->name)
                                                                       : field->value;
                rc = !field->needed ? jb_field(&b, row + field->offset, field->size, field->kind)
                                    : value ? jb_pyvalue(&b, value, 0) : 1;
            }
            if (rc == 0 && n_fields) rc = jb_char(&b, ',');
            if (rc == 0) rc = jb_piece(&b, &s, SEG_TAIL);
            if (rc == 0) {
                item = jb_take(&b, 0);
            } else if (rc == 1) {   /* the document, from the same values, for flowsink.bulk to encode */
                b.len = 0;
                PyObject *record = full_record(row, fields, n_fields, small);
                PyObject *doc_id = record ? indexed_id(prefix, r) : NULL;
                item = doc_id ? flow_ecs_document(&e, record, &attrs, doc_id, action, item_rate, interfaces) : NULL;
                Py_XDECREF(doc_id);
                Py_XDECREF(record);
            }
        }
        flow_ecs_clear(&e);
        if (item == NULL) goto done;
        others += !PyBytes_CheckExact(item);
        PyList_SET_ITEM(items, r, item);
    }
    result = Py_BuildValue("(OOn)", items, declined, others);
done:
    Py_XDECREF(items);
    Py_XDECREF(declined);
    Py_XDECREF(small);
    PyMem_Free(fields);
    if (have_attrs) set_attrs_clear(&attrs);
    bulk_shared_free(&s);
    jb_free(&b);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef METHODS[] = {
    {"v5_documents", py_v5_documents, METH_VARARGS,
     "v5_documents(payload, count, exporter, timestamp, exporter_fields, exporter_tag, id_prefix, category, "
     "connection, export_ms, uptime, rate, scale, engine_type, engine_id, sampling_interval, sampling_mode, "
     "sequence) -> list of ECS documents"},
    {"v5_bulk", py_v5_bulk, METH_VARARGS,
     "v5_bulk(<v5_documents' arguments>, action_head, keep_ids) -> list of bulk lines (bytes), a document "
     "(dict) where a value must be encoded by flowsink.bulk"},
    {"flow_bulk", py_flow_bulk, METH_VARARGS,
     "flow_bulk(<flow_documents' arguments>, action_head, keep_ids) -> list of bulk lines (bytes), documents "
     "(dict) for flowsink.bulk to encode, or None where a record needs the Python path"},
    {"fixed_bulk", py_fixed_bulk, METH_VARARGS,
     "fixed_bulk(data, start, count, record_length, layout, <flow_documents' arguments after records>, "
     "action_head, keep_ids) -> (bulk lines, documents or None per record; the records None stands for; how many "
     "items are not bytes)"},
    {"options_bulk", py_options_bulk, METH_VARARGS,
     "options_bulk(records, context, id_prefix, time_fields, action_head, keep_ids) -> list of bulk lines "
     "(bytes), None where a record needs the Python path"},
    {"flow_documents", py_flow_documents, METH_VARARGS,
     "flow_documents(records, context, id_prefix, action, sampling_rate, renormalize, plan, time_fields, "
     "interfaces, system_init_ms) -> list of documents, None where a record needs the Python path"},
    {"configure", py_configure, METH_VARARGS,
     "configure(record_times, iso_ms, flow_id, directions, category, connection, max_long, max_duration_ms)"},
    {"variable_records", py_variable_records, METH_VARARGS,
     "variable_records(data, start, end, minimum, layout) -> (records, None or 'truncated_record')"},
    {"fixed_records", py_fixed_records, METH_VARARGS,
     "fixed_records(data, start, count, record_length, layout) -> list of record dicts"},
    {"community_pair", py_community_pair, METH_VARARGS,
     "community_pair(src_ip, dst_ip, proto, sport, dport, exporter_tag) -> (community_id, flow_id) or None"},
    {"community_digest", py_community_digest, METH_VARARGS,
     "community_digest(src, dst, proto, sport, dport, seed) -> SHA-1 digest of the Community ID, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_fast", "C accelerator for flowsink's decoders",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fast(void) {
    for (int i = 0; i < K_COUNT; i++)
        if ((KEYS[i] = PyUnicode_InternFromString(KEY_TEXT[i])) == NULL) return NULL;
    for (int i = 0; i < 256; i++) {
        if ((SMALL_TEXT[i] = PyUnicode_FromFormat("%d", i)) == NULL) return NULL;
        TRANSPORT[i] = NULL;
    }
    for (size_t i = 0; i < sizeof(TRANSPORT_NAMES) / sizeof(TRANSPORT_NAMES[0]); i++)
    {
        if ((TRANSPORT[TRANSPORT_NAMES[i].number] = PyUnicode_InternFromString(TRANSPORT_NAMES[i].name)) == NULL)
            return NULL;
        TRANSPORT_TEXT[TRANSPORT_NAMES[i].number] = TRANSPORT_NAMES[i].name;
    }
    for (int i = 0; i < N_COUNT; i++)
        if ((NAMES[i] = PyUnicode_InternFromString(NAME_TEXT[i])) == NULL) return NULL;
    if ((SMALL_NS = PyLong_FromLong(1000000)) == NULL || (ONE = PyLong_FromLong(1)) == NULL ||
        (SMALL_ZERO = PyLong_FromLong(0)) == NULL || (INFO_TYPE = Py_BuildValue("[s]", "info")) == NULL) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    /* flowsink.decode.accel refuses a build whose interface differs from the Python code's (a stale .so) */
    if (module != NULL && PyModule_AddIntConstant(module, "INTERFACE_VERSION", 3) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
