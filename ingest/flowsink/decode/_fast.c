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


/* ---- SHA-1 (FIPS 180-4), only what one short message needs ------------------------------------------ */

#define ROL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

static void sha1_block(uint32_t state[5], const unsigned char *block) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ROL(b, 30); b = a; a = t;
    }
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

static PyObject *py_community_pair(PyObject *self, PyObject *args) {
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

static PyObject *py_community_digest(PyObject *self, PyObject *args) {
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


/* the last two seconds formatted: records of one export share very few (normalize.netflow caches too) */
static long long second_key[2] = {LLONG_MIN, LLONG_MIN};
static char second_text[2][40];
static int second_len[2];
static int second_next;

/* epoch ms -> "YYYY-MM-DDTHH:MM:SS.mmmZ", as flowsink.normalize.netflow.iso_ms (floor division, UTC) */
static PyObject *iso_ms(long long epoch_ms) {
    long long seconds = epoch_ms / 1000, millis = epoch_ms % 1000;
    if (millis < 0) { millis += 1000; seconds -= 1; }
    int slot = second_key[0] == seconds ? 0 : second_key[1] == seconds ? 1 : -1;
    if (slot < 0) {
        time_t t = (time_t)seconds;
        struct tm tm;
        slot = second_next;
        if ((long long)t != seconds || gmtime_r(&t, &tm) == NULL ||
            (second_len[slot] = (int)strftime(second_text[slot], 40, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
            return PyUnicode_FromString("1970-01-01T00:00:00.000Z");
        second_key[slot] = seconds;
        second_next = 1 - slot;
    }
    char text[48];
    int n = second_len[slot];
    memcpy(text, second_text[slot], (size_t)n);
    text[n] = '.';
    text[n + 1] = (char)('0' + millis / 100);
    text[n + 2] = (char)('0' + millis / 10 % 10);
    text[n + 3] = (char)('0' + millis % 10);
    text[n + 4] = 'Z';
    return ascii_text(text, n + 5);
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
static PyObject *ONE;
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
    long long export_ms;
    uint32_t uptime;
    unsigned long long scale;
} V5Context;

static PyObject *v5_document(const unsigned char *r, Py_ssize_t index, const V5Context *c) {
    PyObject *doc = NULL, *event = NULL, *network = NULL, *source = NULL, *destination = NULL;
    PyObject *observer = NULL, *flow = NULL, *record = NULL;
    doc = _PyDict_NewPresized(9); event = _PyDict_NewPresized(7); network = _PyDict_NewPresized(7);
    source = PyDict_New();
    destination = PyDict_New(); observer = PyDict_New(); flow = PyDict_New();
    if (!doc || !event || !network || !source || !destination || !observer || !flow) goto fail;
    int protocol = r[38];
    unsigned src_port = be16(r + 32), dst_port = be16(r + 34);

    /* event */
    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        PyDict_SetItem(event, KEYS[K_CATEGORY], c->category) < 0 ||
        PyDict_SetItem(event, KEYS[K_TYPE], c->connection) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], KEYS[V_NETFLOW_FLOW]) < 0) goto fail;
    long long start = uptime_to_ms(c->export_ms, c->uptime, be32(r + 24));
    long long end = uptime_to_ms(c->export_ms, c->uptime, be32(r + 28));
    if (set_steal(event, K_START, iso_ms(start)) < 0 || set_steal(event, K_END, iso_ms(end)) < 0) goto fail;
    if (end >= start && set_steal(event, K_DURATION, PyLong_FromLongLong((end - start) * 1000000LL)) < 0)
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
    if (PyDict_SetItem(network, KEYS[K_IANA], SMALL_TEXT[protocol]) < 0) goto fail;
    if (TRANSPORT[protocol] != NULL && PyDict_SetItem(network, KEYS[K_TRANSPORT], TRANSPORT[protocol]) < 0)
        goto fail;
    unsigned long long bytes = be32(r + 20), packets = be32(r + 16);
    if ((c->scale == 1 ? PyDict_SetItem(network, KEYS[K_BYTES], PyDict_GetItem(record, KEYS[K_DOCTETS]))
                       : set_steal(network, K_BYTES, PyLong_FromUnsignedLongLong(bytes * c->scale))) < 0 ||
        (c->scale == 1 ? PyDict_SetItem(network, KEYS[K_PACKETS], PyDict_GetItem(record, KEYS[K_DPKTS]))
                       : set_steal(network, K_PACKETS, PyLong_FromUnsignedLongLong(packets * c->scale))) < 0 ||
        PyDict_SetItem(network, KEYS[K_DIRECTION], KEYS[V_UNKNOWN]) < 0) goto fail;

    /* Community ID: ICMP type/code come from the destination port, as Cisco sends them */
    unsigned long long a = src_port, b = dst_port;
    if (protocol == 1 || protocol == 58) { a = (dst_port >> 8) & 0xFF; b = dst_port & 0xFF; }
    unsigned char digest[20];
    community_raw(r, r + 4, 4, protocol, a, b, 0, digest);
    if (set_steal(network, K_COMMUNITY, community_text(digest)) < 0) goto fail;

    if (PyDict_SetItem(observer, KEYS[K_IP], c->exporter) < 0 ||
        set_steal(observer, K_INGRESS, interface_object(be16(r + 12))) < 0 ||
        set_steal(observer, K_EGRESS, interface_object(be16(r + 14))) < 0 ||
        PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0 ||
        PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) goto fail;
    if (PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], c->rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, flow_id_text(c->tag, digest)) < 0 ||
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

static PyObject *py_v5_documents(PyObject *self, PyObject *args) {
    Py_buffer payload;
    Py_ssize_t count;
    V5Context c;
    unsigned long scale, uptime;
    if (!PyArg_ParseTuple(args, "y*nUUO!UUO!O!LkOkOOOOO", &payload, &count, &c.exporter, &c.timestamp,
                          &PyDict_Type, &c.exporter_fields, &c.tag, &c.id_prefix, &PyList_Type, &c.category,
                          &PyList_Type, &c.connection, &c.export_ms, &uptime, &c.rate, &scale,
                          &c.header[0], &c.header[1], &c.header[2], &c.header[3], &c.header[4]))
        return NULL;
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

/* ---- generic flow records (NetFlow v9 / IPFIX): normalize.netflow.flow_document in C ---------------------- */

/* set once by normalize.netflow through configure(): the Python pieces the rare cases call back into */
static PyObject *CB_RELATIVE_TIMES, *CB_ISO_MS, *CB_FLOW_ID, *DIRECTIONS, *CATEGORY, *CONNECTION, *MAX_LONG_OBJ;
static PyObject *MAX_DURATION_OBJ;

enum {
    A_SRC, A_DST, A_SRC_PORT, A_DST_PORT, A_FWD_BYTES, A_FWD_PACKETS, A_BIFLOW, A_TIMES, A_UPTIME_ONLY,
    A_EXPORT_MS, A_UPTIME_MS, A_TIMESTAMP, A_EXPORTER, A_EXPORTER_TAG, A_EXPORTER_FIELDS,
    F_PROTOCOL, F_START_UP, F_END_UP, F_FLOW_DIRECTION, F_INGRESS, F_EGRESS, F_NAME,
    F_TC4, F_TC6, F_T4, F_T6, F_C4, F_C6, V_IPV6, P_FLOW_START, P_FLOW_END,
    R_FIRST, R_END_UP = R_FIRST + 1, R_START_DELTA, R_END_DELTA, R_LAST, N_COUNT
};
static const char *NAME_TEXT[N_COUNT] = {
    "src", "dst", "src_port", "dst_port", "fwd_bytes", "fwd_packets", "biflow", "times", "uptime_only",
    "export_ms", "uptime_ms", "timestamp", "exporter", "exporter_tag", "exporter_fields",
    "protocol_identifier", "flow_start_sys_up_time", "flow_end_sys_up_time", "flow_direction",
    "ingress_interface", "egress_interface", "name",
    "icmp_type_code_ipv4", "icmp_type_code_ipv6", "icmp_type_ipv4", "icmp_type_ipv6", "icmp_code_ipv4",
    "icmp_code_ipv6", "ipv6", "flow_start_", "flow_end_",
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
        long long v;
        if (!small_int(value, &v)) { PyErr_Clear(); return 0; }
        if (unit == 2) { if (v < 0) return 0; }
        else if (v < 0 || v > LLONG_MAX / 1000) return 0;
    }
    return 1;
}

/* normalize.netflow._record_times: absolute dateTime elements (rewritten in the record as ISO text), then
 * the Python _relative_times for whichever of start/end is still open */
static PyObject *record_times(PyObject *record, PyObject *time_fields, PyObject *context, PyObject *system_init) {
    PyObject *start = NULL, *end = NULL;   /* owned */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(time_fields); i++) {
        PyObject *pair = PyTuple_GET_ITEM(time_fields, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        PyObject *value = PyDict_GetItemWithError(record, name);
        if (value == NULL) { if (PyErr_Occurred()) goto fail; continue; }
        if (!PyLong_CheckExact(value)) continue;
        long long v = PyLong_AsLongLong(value), millis;
        int unit = time_unit(PyTuple_GET_ITEM(pair, 1));
        if (unit == 0) millis = v;
        else if (unit == 1) millis = v * 1000;
        else {
            unsigned long long raw = (unsigned long long)v;
            millis = ((long long)(raw >> 32) - NTP_EPOCH_OFFSET_S) * 1000 +
                     (long long)(((raw & 0xFFFFFFFFULL) * 1000) >> 32);
        }
        PyObject *text = iso_ms(millis);
        if (text == NULL || PyDict_SetItem(record, name, text) < 0) { Py_XDECREF(text); goto fail; }
        Py_DECREF(text);
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        if (start == NULL && PyUnicode_Tailmatch(name, NAMES[P_FLOW_START], 0, n, -1) == 1) {
            if ((start = PyLong_FromLongLong(millis)) == NULL) goto fail;
        } else if (end == NULL && PyUnicode_Tailmatch(name, NAMES[P_FLOW_END], 0, n, -1) == 1) {
            if ((end = PyLong_FromLongLong(millis)) == NULL) goto fail;
        }
    }
    if (start != NULL && end != NULL) return Py_BuildValue("(NN)", start, end);
    /* _relative_times reads only these elements: without any of them it has nothing to add */
    int relative = 0;
    for (int k = R_FIRST; k <= R_LAST && !relative; k++) {
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
typedef struct { PyObject *plan[9]; PyObject *ctx[6]; } SetAttrs;

static void set_attrs_clear(SetAttrs *a) {
    for (int i = 0; i < 9; i++) Py_CLEAR(a->plan[i]);
    for (int i = 0; i < 6; i++) Py_CLEAR(a->ctx[i]);
}

static int set_attrs_read(SetAttrs *a, PyObject *plan, PyObject *context) {
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < 9; i++)
        if ((a->plan[i] = PyObject_GetAttr(plan, NAMES[A_SRC + i])) == NULL) { set_attrs_clear(a); return -1; }
    for (int i = 0; i < 6; i++)
        if ((a->ctx[i] = PyObject_GetAttr(context, NAMES[A_EXPORT_MS + i])) == NULL) { set_attrs_clear(a); return -1; }
    return 0;
}

/* one flow document, or None (the record needs the Python path; nothing was changed), NULL on error */
static PyObject *flow_document_from(PyObject *record, PyObject *context, const SetAttrs *attrs, PyObject *doc_id,
                                    PyObject *action, PyObject *rate, int renormalize, PyObject *time_fields,
                                    PyObject *interfaces, PyObject *system_init) {
    PyObject *const *plan_attr = attrs->plan, *const *ctx_attr = attrs->ctx;
    PyObject *doc = NULL, *event = NULL, *network = NULL, *source = NULL, *destination = NULL;
    PyObject *observer = NULL, *flow = NULL, *times = NULL, *start = NULL, *end = NULL, *scale = NULL;
    PyObject *result = NULL;
    PyObject *export_ms = ctx_attr[0], *uptime = ctx_attr[1], *timestamp = ctx_attr[2], *exporter = ctx_attr[3];
    PyObject *tag = ctx_attr[4], *exporter_fields = ctx_attr[5];

    /* --- everything that may send the record to the Python path is decided before anything is changed --- */
    if (PyObject_IsTrue(plan_attr[6])) { result = Py_None; Py_INCREF(result); goto done; }   /* biflow */
    PyObject *src_ip = pick(record, plan_attr[0]);
    PyObject *dst_ip = src_ip || !PyErr_Occurred() ? pick(record, plan_attr[1]) : NULL;
    PyObject *src_port = !PyErr_Occurred() ? pick(record, plan_attr[2]) : NULL;
    PyObject *dst_port = !PyErr_Occurred() ? pick(record, plan_attr[3]) : NULL;
    PyObject *protocol = !PyErr_Occurred() ? PyDict_GetItemWithError(record, NAMES[F_PROTOCOL]) : NULL;
    if (PyErr_Occurred()) goto done;
    if ((src_ip && !PyUnicode_CheckExact(src_ip)) || (dst_ip && !PyUnicode_CheckExact(dst_ip))) {
        result = Py_None; Py_INCREF(result); goto done;
    }
    if (src_ip && !is_address_text(src_ip)) src_ip = NULL;
    if (dst_ip && !is_address_text(dst_ip)) dst_ip = NULL;
    long long proto = -1, number;
    if (protocol && small_int(protocol, &number)) {
        if (number < 0) { result = Py_None; Py_INCREF(result); goto done; }
        if (number <= 255) proto = number;
    }
    PyErr_Clear();
    if (src_port && !PyLong_CheckExact(src_port)) src_port = NULL;
    if (dst_port && !PyLong_CheckExact(dst_port)) dst_port = NULL;
    unsigned long long sport = 0, dport = 0;
    if ((src_port && as_u64(src_port, &sport) < 0) || (dst_port && as_u64(dst_port, &dport) < 0)) {
        PyErr_Clear();
        result = Py_None; Py_INCREF(result); goto done;
    }

    int times_ok = time_values_fit(record, time_fields);
    if (times_ok <= 0) {
        if (times_ok == 0) { result = Py_None; Py_INCREF(result); }
        goto done;
    }

    doc = _PyDict_NewPresized(9); event = _PyDict_NewPresized(7); network = _PyDict_NewPresized(7);
    source = PyDict_New(); destination = PyDict_New(); observer = PyDict_New(); flow = PyDict_New();
    if (!doc || !event || !network || !source || !destination || !observer || !flow) goto done;
    int scale_is_one = !renormalize;
    if (renormalize) {
        int one = PyObject_RichCompareBool(rate, ONE, Py_EQ);
        if (one < 0) goto done;
        scale_is_one = one;
    }
    scale = renormalize ? rate : ONE;
    Py_INCREF(scale);

    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        PyDict_SetItem(event, KEYS[K_CATEGORY], CATEGORY) < 0 ||
        PyDict_SetItem(event, KEYS[K_TYPE], CONNECTION) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], action) < 0) goto done;
    long long up;
    if (PyObject_IsTrue(plan_attr[8]) && uptime != Py_None) {
        PyObject *s = PyDict_GetItemWithError(record, NAMES[F_START_UP]);
        PyObject *e = s || !PyErr_Occurred() ? PyDict_GetItemWithError(record, NAMES[F_END_UP]) : NULL;
        if (PyErr_Occurred()) goto done;
        if (s && e && PyLong_CheckExact(s) && PyLong_CheckExact(e)) {
            long long sv, ev, xm;
            if (!small_int(s, &sv) || !small_int(e, &ev) || !small_int(uptime, &up) || !small_int(export_ms, &xm)) {
                /* values beyond 64 bits: let Python's arbitrary-precision path do the sums */
                PyErr_Clear();
                Py_CLEAR(doc);
                result = Py_None; Py_INCREF(result); goto done;
            }
            uint32_t sb = (uint32_t)((unsigned long long)up - (unsigned long long)sv);
            uint32_t eb = (uint32_t)((unsigned long long)up - (unsigned long long)ev);
            long long st = xm - (sb < 0x80000000u ? (long long)sb : (long long)sb - 4294967296LL);
            long long en = xm - (eb < 0x80000000u ? (long long)eb : (long long)eb - 4294967296LL);
            if (set_steal(event, K_START, iso_ms(st)) < 0 || set_steal(event, K_END, iso_ms(en)) < 0) goto done;
            if (en >= st && set_steal(event, K_DURATION, PyLong_FromLongLong((en - st) * 1000000LL)) < 0) goto done;
        }
    } else if (PyObject_IsTrue(plan_attr[7])) {
        times = record_times(record, time_fields, context, system_init);
        if (times == NULL || !PyTuple_Check(times) || PyTuple_GET_SIZE(times) != 2) goto done;
        start = PyTuple_GET_ITEM(times, 0); end = PyTuple_GET_ITEM(times, 1);
        if (start != Py_None && set_steal(event, K_START, iso_any(start)) < 0) goto done;
        if (end != Py_None) {
            if (set_steal(event, K_END, iso_any(end)) < 0) goto done;
            if (start != Py_None) {
                PyObject *span = PyNumber_Subtract(end, start);
                if (span == NULL) goto done;
                int zero_or_more = PyObject_RichCompareBool(end, start, Py_GE);
                int fits = zero_or_more > 0 ? PyObject_RichCompareBool(span, MAX_DURATION_OBJ, Py_LE) : 0;
                if (zero_or_more < 0 || fits < 0) { Py_DECREF(span); goto done; }
                if (fits) {
                    PyObject *ns = PyNumber_Multiply(span, SMALL_NS);
                    Py_DECREF(span);
                    if (set_steal(event, K_DURATION, ns) < 0) goto done;
                } else {
                    Py_DECREF(span);
                }
            }
        }
        start = end = NULL;
    }

    if (set_steal(doc, K_ID, (Py_INCREF(doc_id), doc_id)) < 0 ||
        PyDict_SetItem(doc, KEYS[K_TIMESTAMP], timestamp) < 0 ||
        PyDict_SetItem(doc, KEYS[K_EVENT], event) < 0 || PyDict_SetItem(doc, KEYS[K_NETWORK], network) < 0)
        goto done;
    if (src_ip) {
        if (PyDict_SetItem(source, KEYS[K_IP], src_ip) < 0) goto done;
        int six = PyUnicode_FindChar(src_ip, ':', 0, PyUnicode_GET_LENGTH(src_ip), 1) >= 0;
        if (PyDict_SetItem(network, KEYS[K_TYPE], six ? NAMES[V_IPV6] : KEYS[V_IPV4]) < 0) goto done;
    }
    if (dst_ip) {
        if (PyDict_SetItem(destination, KEYS[K_IP], dst_ip) < 0) goto done;
        if (!src_ip) {
            int six = PyUnicode_FindChar(dst_ip, ':', 0, PyUnicode_GET_LENGTH(dst_ip), 1) >= 0;
            if (PyDict_SetItem(network, KEYS[K_TYPE], six ? NAMES[V_IPV6] : KEYS[V_IPV4]) < 0) goto done;
        }
    }
    if (src_port && PyDict_SetItem(source, KEYS[K_PORT], src_port) < 0) goto done;
    if (dst_port && PyDict_SetItem(destination, KEYS[K_PORT], dst_port) < 0) goto done;
    if (proto >= 0) {
        if (PyDict_SetItem(network, KEYS[K_IANA], SMALL_TEXT[proto]) < 0) goto done;
        if (TRANSPORT[proto] && PyDict_SetItem(network, KEYS[K_TRANSPORT], TRANSPORT[proto]) < 0) goto done;
    }
    PyObject *fwd_bytes = pick(record, plan_attr[4]);
    PyObject *fwd_packets = !PyErr_Occurred() ? pick(record, plan_attr[5]) : NULL;
    if (PyErr_Occurred()) goto done;
    if (fwd_bytes && PyLong_CheckExact(fwd_bytes) && set_steal(network, K_BYTES, scaled(fwd_bytes, scale, scale_is_one)) < 0)
        goto done;
    if (fwd_packets && PyLong_CheckExact(fwd_packets) &&
        set_steal(network, K_PACKETS, scaled(fwd_packets, scale, scale_is_one)) < 0)
        goto done;
    PyObject *direction_key = PyDict_GetItemWithError(record, NAMES[F_FLOW_DIRECTION]);
    if (direction_key == NULL && PyErr_Occurred()) goto done;
    PyObject *direction = PyDict_GetItemWithError(DIRECTIONS, direction_key ? direction_key : Py_None);
    if (direction == NULL && PyErr_Occurred()) goto done;
    if (PyDict_SetItem(network, KEYS[K_DIRECTION], direction ? direction : KEYS[V_UNKNOWN]) < 0) goto done;

    /* Community ID, and flow.id from its hash */
    int have_ids = 0;
    unsigned char digest[20];
    if (src_ip && dst_ip && proto >= 0) {
        unsigned long long a = sport, b = dport;
        int usable = 1;
        if (proto == 1 || proto == 58) {
            PyObject *code = first_of(record, F_TC4, F_TC6);
            if (code == NULL && PyErr_Occurred()) goto done;
            usable = 0;
            if (code == NULL) {
                PyObject *type = first_of(record, F_T4, F_T6);
                if (type == NULL && PyErr_Occurred()) goto done;
                if (type && PyLong_CheckExact(type)) {
                    PyObject *icmp_code = first_of(record, F_C4, F_C6);
                    if (icmp_code == NULL && PyErr_Occurred()) goto done;
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
            if (PyErr_Occurred()) goto done;
        }
        if (usable) {
            unsigned char pa[16], pb[16];
            size_t la = pack_text(src_ip, pa), lb = pack_text(dst_ip, pb);
            if (la && la == lb) {
                community_raw(pa, pb, la, (int)proto, a, b, 0, digest);
                have_ids = 1;
            }
        }
    }
    PyObject *this_flow_id;
    if (have_ids) {
        if (set_steal(network, K_COMMUNITY, community_text(digest)) < 0) goto done;
        this_flow_id = flow_id_text(tag, digest);
    } else {
        PyObject *proto_obj = proto >= 0 ? protocol : Py_None;
        this_flow_id = PyObject_CallFunctionObjArgs(CB_FLOW_ID, exporter, src_ip ? src_ip : Py_None,
                                                    dst_ip ? dst_ip : Py_None, proto_obj,
                                                    src_port ? src_port : Py_None, dst_port ? dst_port : Py_None,
                                                    NULL);
    }
    if (this_flow_id == NULL) goto done;

    if (PyDict_SetItem(observer, KEYS[K_IP], exporter) < 0) { Py_DECREF(this_flow_id); goto done; }
    PyObject *ingress = PyDict_GetItemWithError(record, NAMES[F_INGRESS]);
    if (ingress && PyLong_CheckExact(ingress) &&
        set_steal(observer, K_INGRESS, interface_named(ingress, interfaces)) < 0) { Py_DECREF(this_flow_id); goto done; }
    PyObject *egress = PyErr_Occurred() ? NULL : PyDict_GetItemWithError(record, NAMES[F_EGRESS]);
    if (egress && PyLong_CheckExact(egress) &&
        set_steal(observer, K_EGRESS, interface_named(egress, interfaces)) < 0) { Py_DECREF(this_flow_id); goto done; }
    if (PyErr_Occurred()) { Py_DECREF(this_flow_id); goto done; }
    if (PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        (PyDict_GET_SIZE(source) && PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0) ||
        (PyDict_GET_SIZE(destination) && PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) ||
        PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, this_flow_id) < 0 ||
        PyDict_SetItem(doc, KEYS[K_FLOW], flow) < 0 ||
        PyDict_SetItem(record, KEYS[K_EXPORTER], exporter_fields) < 0 ||
        PyDict_SetItem(doc, KEYS[K_NETFLOW], record) < 0) goto done;
    PyObject *tree[] = {record, event, network, source, destination, observer, flow, doc};
    for (int i = 0; i < 8; i++) untrack(tree[i]);
    result = doc;
    doc = NULL;
done:
    Py_XDECREF(doc); Py_XDECREF(event); Py_XDECREF(network); Py_XDECREF(source); Py_XDECREF(destination);
    Py_XDECREF(observer); Py_XDECREF(flow); Py_XDECREF(times); Py_XDECREF(scale);
    return result;
}

/* flow_documents(records, context, id_prefix, action, sampling_rate, renormalize, plan, time_fields, interfaces,
 * system_init_ms) -> list: a document per record (ids id_prefix + index), None where the Python path must go;
 * sampling_rate is one rate for all, or a list of one per record */
static PyObject *py_flow_documents(PyObject *self, PyObject *args) {
    PyObject *records, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init;
    int renormalize;
    if (!PyArg_ParseTuple(args, "O!OUUOpOOOO", &PyList_Type, &records, &context, &prefix, &action, &rate,
                          &renormalize, &plan, &time_fields, &interfaces, &system_init))
        return NULL;
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
            PyObject *record_rate = PyList_Check(rate) && i < PyList_GET_SIZE(rate) ? PyList_GET_ITEM(rate, i) : rate;
            doc = flow_document_from(record, context, &attrs, doc_id, action, record_rate, renormalize,
                                     time_fields, interfaces, system_init);
            Py_DECREF(doc_id);
        }
        if (doc == NULL) { Py_CLEAR(documents); break; }
        PyList_SET_ITEM(documents, i, doc);
    }
    set_attrs_clear(&attrs);
    return documents;
}

static PyObject *py_configure(PyObject *self, PyObject *kwargs_unused) {
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

static PyObject *field_value(const unsigned char *p, Py_ssize_t n, int kind) {
    switch (kind) {
    case KIND_UNSIGNED: {
        unsigned long long v = 0;
        for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
        return PyLong_FromUnsignedLongLong(v);
    }
    case KIND_SIGNED: {
        unsigned long long v = (n && (p[0] & 0x80)) ? ~0ULL : 0;
        for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
        return PyLong_FromLongLong((long long)v);
    }
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
        if (out == NULL) return NULL;
        Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i) *o++ = ':';
            *o++ = (Py_UCS1)HEX[p[i] >> 4]; *o++ = (Py_UCS1)HEX[p[i] & 15];
        }
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
        if (out == NULL) return NULL;
        Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
        for (Py_ssize_t i = 0; i < n; i++) { o[2 * i] = (Py_UCS1)HEX[p[i] >> 4]; o[2 * i + 1] = (Py_UCS1)HEX[p[i] & 15]; }
        return out;
    }
    }
}

/* fixed_records(data, start, count, record_length, layout) -> [record dicts]; layout: ((name, offset, length,
 * kind), ...) in template order, 0-length fields already left out (templates.Template drops them too) */
static PyObject *py_fixed_records(PyObject *self, PyObject *args) {
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
    for (Py_ssize_t f = 0; f < fields; f++) {   /* the layout is ours, but a wrong one must not read past */
        PyObject *spec = PyTuple_GET_ITEM(layout, f);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 4 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))) {
            PyErr_SetString(PyExc_ValueError, "bad layout");
            goto done;
        }
        Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 2));
        if (PyErr_Occurred()) goto done;
        if (offset < 0 || size < 0 || offset + size > length) {
            PyErr_SetString(PyExc_ValueError, "layout field outside the record");
            goto done;
        }
    }
    records = PyList_New(count);
    if (records == NULL) goto done;
    const unsigned char *base = (const unsigned char *)data.buf + start;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *record = _PyDict_NewPresized(fields + 1);
        if (record == NULL) { Py_CLEAR(records); goto done; }
        PyList_SET_ITEM(records, r, record);
        const unsigned char *row = base + r * length;
        for (Py_ssize_t f = 0; f < fields; f++) {
            PyObject *spec = PyTuple_GET_ITEM(layout, f);
            Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
            Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 2));
            int kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
            PyObject *value = field_value(row + offset, size, kind);
            if (value == NULL || PyDict_SetItem(record, PyTuple_GET_ITEM(spec, 0), value) < 0) {
                Py_XDECREF(value);
                Py_CLEAR(records);
                goto done;
            }
            Py_DECREF(value);
        }
    }
done:
    PyBuffer_Release(&data);
    return records;
}

/* variable_records(data, start, end, minimum, layout) -> (records, None | "truncated_record"); layout:
 * ((name, length or -1 for variable, kind), ...) for every field; records end where a field runs past `end`,
 * as templates.Template._decode_variable does (0-length fixed fields are left out, as it leaves them out) */
static PyObject *py_variable_records(PyObject *self, PyObject *args) {
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

static PyMethodDef METHODS[] = {
    {"v5_documents", py_v5_documents, METH_VARARGS,
     "v5_documents(payload, count, exporter, timestamp, exporter_fields, exporter_tag, id_prefix, category, "
     "connection, export_ms, uptime, rate, scale, engine_type, engine_id, sampling_interval, sampling_mode, "
     "sequence) -> list of ECS documents"},
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
                                    -1, METHODS};

PyMODINIT_FUNC PyInit__fast(void) {
    for (int i = 0; i < K_COUNT; i++)
        if ((KEYS[i] = PyUnicode_InternFromString(KEY_TEXT[i])) == NULL) return NULL;
    for (int i = 0; i < 256; i++) {
        if ((SMALL_TEXT[i] = PyUnicode_FromFormat("%d", i)) == NULL) return NULL;
        TRANSPORT[i] = NULL;
    }
    for (size_t i = 0; i < sizeof(TRANSPORT_NAMES) / sizeof(TRANSPORT_NAMES[0]); i++)
        if ((TRANSPORT[TRANSPORT_NAMES[i].number] = PyUnicode_InternFromString(TRANSPORT_NAMES[i].name)) == NULL)
            return NULL;
    for (int i = 0; i < N_COUNT; i++)
        if ((NAMES[i] = PyUnicode_InternFromString(NAME_TEXT[i])) == NULL) return NULL;
    if ((SMALL_NS = PyLong_FromLong(1000000)) == NULL || (ONE = PyLong_FromLong(1)) == NULL) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    /* flowsink.decode.accel refuses a build whose interface differs from the Python code's (a stale .so) */
    if (module != NULL && PyModule_AddIntConstant(module, "INTERFACE_VERSION", 2) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
