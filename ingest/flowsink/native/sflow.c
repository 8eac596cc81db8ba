/*
 * sFlow v5 in C: the flow and counter samples switches send most, as ECS documents or their bulk lines.
 *
 * Why C: bench/bench_decode_sflow.py measured the pure-Python decoder at ~69k flows/s decode + normalise +
 * serialise (87k decode only) on one core, against a target of 150k. Its profile put ~60% of the time in
 * building each ECS document (a flow sample becomes ~35 values in seven nested objects, three address texts,
 * two MAC texts and a Community ID) and most of the rest in unpacking the sample, its records and the sampled
 * header layer by layer. The Python path had already been flattened into one parse and one dict literal per
 * sample (decode.sflow._common_flow_sample, normalize.sflow.common_flow_document); what remained was the
 * interpreter's cost per value, which only leaving the interpreter removes.
 *
 * Given a BulkFormat the decoder's output is Elasticsearch bulk lines, and building the dicts only for orjson to
 * walk them cost more than the decoding (bench/bench_decode_sflow.py: ~107k flows/s with dicts + orjson, ~250k
 * writing the lines here): the common flow sample is then written straight from the datagram into a buffer, the
 * datagram's shared texts (timestamp, agent, tag, datagram fields) escaped once per call. The values both
 * outputs compute (Derived) and the order of the sflow object's integers (sflow_head, sflow_tail) have one
 * definition each.
 *
 * What is here:
 *   sflow_samples(data, timestamp, id_prefix, tag, agent, fields, renormalize, offset, index, count, documents,
 *                 runs[, encoded, action_head, keep_ids])
 *                                a datagram's samples from offset while they are common flow samples (format 1):
 *                                documents appended (or, with the bulk arguments, their bulk lines to encoded,
 *                                for more kinds of flow sample and the usual counter sample too), sequence runs
 *                                extended as decode.sflow._extend_run_of does; returns where it stopped, at a
 *                                sample the Python path decodes (or the end), and how many of each it built;
 *   encode_documents(documents, encoded, action_head, keep_ids)
 *                                the documents the Python path built, as bulk lines (jb_document): with it every
 *                                sFlow document is written in C but the rare one holding a float;
 *   sflow_flow_sample(data, timestamp, id_prefix, tag, agent, fields, renormalize, start, end, index)
 *                                one flow sample's body -> (document, sample_sequence, source_id), or None
 *                                when it is not the common case.
 *
 * The common case is exactly decode.sflow._common_flow_sample's: known input and output ifIndex, at most two
 * records, a raw header record of an Ethernet frame with at most one 802.1Q tag, an option-less IPv4 first
 * fragment or an IPv6 packet whose next header is TCP or UDP, a complete TCP or UDP header, and at most one
 * extended switch record. The document equals normalize.sflow.common_flow_document's key for key, value for
 * value, in the same key order (tests/test_decode_fast_sflow.py compares the serialised bytes), and its bulk
 * lines equal flowsink.bulk.encode_document's of it (tests/test_decode_bulk*.py).
 *
 * With a BulkFormat the writer takes more of what real switches send (the sflow_issue_15918 capture: a third of
 * its flow samples): expanded flow samples, input/output interfaces that are unknown, a discard reason, a count
 * of destinations or another format; two VLAN tags (802.1Q, 802.1ad, 0x9100); IPv4 options; IPv6 extension
 * headers (hop-by-hop, routing, fragment with offset 0, destination options, AH, ...) before the transport;
 * ICMP/ICMPv6 (type and code, the Community ID from them), SCTP and protocols without a transport header read.
 * Their lines equal flowsink.bulk's of normalize.sflow.flow_document, whose key order is the common path's. As
 * dicts they are left to the Python path: building them here would repeat it for no pipeline that asks.
 * Anything else (other records, MPLS, a truncated header, a later fragment) stops the run for the Python path.
 *
 * Documents are trees, never cycles: they are left out of the cyclic GC (ecs_documents.h) as NetFlow's are. The
 * Community ID is community_id.c's, called directly: one SHA-1 and one set of rules for every protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "bulk_line.h"
#include "bytes_text.h"
#include "community_id.h"
#include "ecs_documents.h"
#include "enrichment.h"
#include "json_writer.h"
#include "module.h"

enum {
    K_ID, K_TIMESTAMP, K_EVENT, K_OBSERVER, K_NETWORK, K_FLOW, K_SOURCE, K_DESTINATION, K_SFLOW,
    K_KIND, K_CATEGORY, K_TYPE, K_ACTION, K_START, K_END, K_DURATION,
    K_IP, K_INGRESS, K_EGRESS, K_INTERFACE, K_PLAIN_ID, K_PORT, K_MAC,
    K_BYTES, K_PACKETS, K_DIRECTION, K_IANA, K_TRANSPORT, K_VLAN, K_COMMUNITY, K_SAMPLING_RATE,
    K_SAMPLE_SEQUENCE, K_SOURCE_ID_TYPE, K_SOURCE_ID_INDEX, K_SAMPLE_POOL, K_DROPS, K_INPUT_INTERFACE,
    K_OUTPUT_INTERFACE, K_HEADER_PROTOCOL, K_FRAME_LENGTH, K_STRIPPED, K_HEADER_LENGTH, K_HEADER_PROTOCOL_NAME,
    K_ETHERTYPE, K_IP_TOS, K_IP_TTL, K_IP_TOTAL_LENGTH, K_SRC_VLAN, K_SRC_PRIORITY, K_DST_VLAN, K_DST_PRIORITY,
    K_IP_ID, K_IP_FLAGS, K_IPV6_FLOW_LABEL, K_TCP_FLAGS,
    V_EVENT, V_NETWORK, V_CONNECTION, V_FLOW_SAMPLE, V_INGRESS, V_EGRESS, V_IPV4, V_IPV6, V_TCP, V_UDP,
    V_SIX, V_SEVENTEEN, V_ETHERNET, K_COUNT
};

static const char *KEY_TEXT[K_COUNT] = {
    "_id", "@timestamp", "event", "observer", "network", "flow", "source", "destination", "sflow",
    "kind", "category", "type", "action", "start", "end", "duration",
    "ip", "ingress", "egress", "interface", "id", "port", "mac",
    "bytes", "packets", "direction", "iana_number", "transport", "vlan", "community_id", "sampling_rate",
    "sample_sequence", "source_id_type", "source_id_index", "sample_pool", "drops", "input_interface",
    "output_interface", "header_protocol", "frame_length", "stripped", "header_length", "header_protocol_name",
    "ethertype", "ip_tos", "ip_ttl", "ip_total_length", "src_vlan", "src_priority", "dst_vlan", "dst_priority",
    "ip_id", "ip_flags", "ipv6_flow_label", "tcp_flags",
    "event", "network", "connection", "sflow_flow_sample", "ingress", "egress", "ipv4", "ipv6", "tcp", "udp",
    "6", "17", "ethernet",
};

static PyObject *KEYS[K_COUNT];
/* the same keys as JSON object keys, quoted with their colon: "name": */
static char KEY_JSON[K_COUNT][32];
static int KEY_JSON_LEN[K_COUNT];
/* every key the sflow object may hold: a datagram field of one of these names would change its order */
static PyObject *SFLOW_KEYS;
static PyObject *ZERO;

static const char HEX_UPPER[] = "0123456789ABCDEF";

static PyObject *decimal_text(unsigned long long value) {
    char text[24];
    return ascii_text(text, decimal(text, value));
}

/* a str prefix (ASCII or not) followed by ASCII characters */
static PyObject *joined(PyObject *prefix, const char *tail, Py_ssize_t tail_length) {
    if (!PyUnicode_IS_ASCII(prefix)) {
        PyObject *rest = PyUnicode_FromStringAndSize(tail, tail_length);
        if (rest == NULL) return NULL;
        PyObject *out = PyUnicode_Concat(prefix, rest);
        Py_DECREF(rest);
        return out;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(prefix);
    PyObject *out = PyUnicode_New(n + tail_length, 127);
    if (out == NULL) return NULL;
    memcpy(PyUnicode_1BYTE_DATA(out), PyUnicode_1BYTE_DATA(prefix), (size_t)n);
    memcpy(PyUnicode_1BYTE_DATA(out) + n, tail, (size_t)tail_length);
    return out;
}


/* IPv6 text exactly as inet_ntop writes it (RFC 5952, and glibc's dotted tail for IPv4-mapped/compatible
 * addresses), so through the same function; unlike socket.inet_ntop it needs no bytes object or call.
 * Returns its length, -1 with OSError set. */
static int ipv6_chars(const unsigned char *p, char text[INET6_ADDRSTRLEN]) {
    if (inet_ntop(AF_INET6, p, text, INET6_ADDRSTRLEN) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return (int)strlen(text);
}

static PyObject *ipv6_text(const unsigned char *p) {
    char text[INET6_ADDRSTRLEN];
    int n = ipv6_chars(p, text);
    return n < 0 ? NULL : ascii_text(text, n);
}

/* ECS MAC text: upper-case hex, hyphens */
static void mac_chars(const unsigned char *p, char text[17]) {
    for (int i = 0; i < 6; i++) {
        text[3 * i] = HEX_UPPER[p[i] >> 4];
        text[3 * i + 1] = HEX_UPPER[p[i] & 15];
        if (i < 5) text[3 * i + 2] = '-';
    }
}

static PyObject *mac_text(const unsigned char *p) {
    char text[17];
    mac_chars(p, text);
    return ascii_text(text, 17);
}

/* d[key] = value, stealing value; -1 on error (value NULL included) */
static int put(PyObject *d, int key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(d, KEYS[key], value);
    Py_DECREF(value);
    return rc;
}

static int put_u(PyObject *d, int key, unsigned long value) { return put(d, key, PyLong_FromUnsignedLong(value)); }

/* d[key] = {inner_key: value}, stealing value */
static int put_nested(PyObject *d, int key, int inner_key, PyObject *value) {
    if (value == NULL) return -1;
    PyObject *inner = PyDict_New();
    if (inner == NULL) { Py_DECREF(value); return -1; }
    if (put(inner, inner_key, value) < 0) { Py_DECREF(inner); return -1; }
    untrack(inner);
    return put(d, key, inner);
}

/* {"interface": {"id": "<index>"}}, with what the enrichment configures for the ifIndex */
static PyObject *interface_object(uint32_t index, const Enrich *en) {
    InterfaceHit hit;
    int configured = enrich_interface(en, index, &hit);
    if (configured < 0) return NULL;
    PyObject *outer = PyDict_New();
    if (outer == NULL) return NULL;
    if (put_nested(outer, K_INTERFACE, K_PLAIN_ID, decimal_text(index)) < 0 ||
        (configured && enrich_dict_interface(PyDict_GetItem(outer, KEYS[K_INTERFACE]), &hit) < 0)) {
        Py_DECREF(outer);
        return NULL;
    }
    untrack(outer);
    return outer;
}

static PyObject *one_item_list(int key) {
    PyObject *list = PyList_New(1);
    if (list == NULL) return NULL;
    Py_INCREF(KEYS[key]);
    PyList_SET_ITEM(list, 0, KEYS[key]);
    untrack(list);
    return list;
}

/* What the parse of one flow sample found (names as in decode.sflow._common_flow_sample). */
typedef struct {
    uint32_t sequence, source_id, rate, pool, drops, input_if, output_if;
    uint32_t source_type, source_index;   /* source_id split (an expanded sample sends them apart, 32 bits each) */
    uint32_t input_format, output_format;   /* input_if/output_if are the values under these formats */
    uint32_t frame_length, stripped, header_length;
    int has_switch, expanded;
    int extended;   /* not the common case: only the bulk writer takes it, dicts come from the Python path */
    uint32_t switch_values[4];
    const unsigned char *src_mac, *dst_mac, *src_ip, *dst_ip;
    int vlan;   /* -1: untagged */
    int vlan_count;
    unsigned inner_vlan;
    unsigned ethertype, tos, ttl, total_length, ip_id, ip_flags, flow_label, proto, src_port, dst_port;
    int tcp_flags;   /* -1: not TCP */
    int has_ports, icmp;   /* icmp: src_port/dst_port hold the ICMP type and code */
    int extension_count;
    unsigned char extensions[16];   /* IPv6 extension headers before the transport, in order */
    int extra_count;   /* extended router and gateway records, in record order: [at, end) of their data */
    struct { uint32_t format; Py_ssize_t at, end; } extra[2];
    int has_gateway;
    uint32_t src_as, dst_as;   /* the gateway record's, for source.as and destination.as */
} Sample;

/* sFlow's interface formats (decode.sflow._interface): 0 an ifIndex (0x3FFFFFFF unknown), 1 a discard reason,
 * 2 a count of output interfaces, any other format with its value */
#define IF_UNKNOWN 0x3FFFFFFFu
static int interface_known(uint32_t format, uint32_t value) { return format == 0 && value != IF_UNKNOWN; }

/* IPv6 extension headers packet.parse_ipv6 walks: hop-by-hop, routing, destination options, mobility, HIP,
 * shim6, fragment, AH */
static int ipv6_extension(unsigned next_header) {
    switch (next_header) {
    case 0: case 43: case 60: case 135: case 139: case 140: case 44: case 51: return 1;
    default: return 0;
    }
}

/* An sFlow address (decode.sflow._address) at data[at:end): the offset after it, -1 when it does not fit or its
 * type is not 0 (none), 1 (IPv4) or 2 (IPv6) */
static Py_ssize_t address_end(const unsigned char *data, Py_ssize_t at, Py_ssize_t end) {
    if (at + 4 > end) return -1;
    uint32_t kind = be32(data + at);
    Py_ssize_t size = kind == 1 ? 4 : kind == 2 ? 16 : kind == 0 ? 0 : -1;
    if (size < 0 || at + 4 + size > end) return -1;
    return at + 4 + size;
}

/* 1 when the extended gateway record at data[at:end) is whole as decode.sflow._flow_gateway reads it, with the
 * source and destination AS it reports */
static int gateway_valid(const unsigned char *data, Py_ssize_t at, Py_ssize_t end, uint32_t *src_as,
                         uint32_t *dst_as) {
    Py_ssize_t position = address_end(data, at, end);
    if (position < 0 || position + 16 > end) return 0;
    uint32_t asn = be32(data + position), segments = be32(data + position + 12);
    *src_as = be32(data + position + 4);
    *dst_as = asn;
    position += 16;
    Py_ssize_t path_length = 0;
    for (uint32_t i = 0; i < segments; i++) {
        if (position + 8 > end) return 0;
        uint32_t length = be32(data + position + 4);
        position += 8;
        if ((Py_ssize_t)length > (end - position) / 4 || path_length + (Py_ssize_t)length > 1024) return 0;
        if (length) *dst_as = be32(data + position + 4 * ((Py_ssize_t)length - 1));
        path_length += length;
        position += 4 * (Py_ssize_t)length;
    }
    if (position + 4 > end) return 0;
    uint32_t communities = be32(data + position);
    position += 4;
    if ((Py_ssize_t)communities > (end - position) / 4) return 0;
    position += 4 * (Py_ssize_t)communities;
    return position + 4 <= end;
}

/* 1 when [start, end) of data is a flow sample the C writers take (filled into s; s->extended when it is not the
 * common case only the bulk writer takes), 0 when the Python path must decode it: whenever its parse would find a
 * record other than one raw Ethernet header and one extended switch record, a truncated header, MPLS, a non-first
 * fragment or anything else it reports beyond what is written here. fmt: 1 a flow sample, 3 an expanded one. */
static int parse_sample(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, uint32_t fmt, Sample *s) {
    const unsigned char *p = data + start;
    uint32_t count;
    Py_ssize_t position;
    if (fmt == 1) {
        if (start + 32 > end) return 0;
        s->sequence = be32(p); s->source_id = be32(p + 4); s->rate = be32(p + 8); s->pool = be32(p + 12);
        s->drops = be32(p + 16);
        uint32_t input = be32(p + 20), output = be32(p + 24);
        count = be32(p + 28);
        s->source_type = s->source_id >> 24; s->source_index = s->source_id & 0xFFFFFF;
        s->input_format = input >> 30; s->input_if = input & IF_UNKNOWN;
        s->output_format = output >> 30; s->output_if = output & IF_UNKNOWN;
        s->expanded = 0;
        position = start + 32;
    } else {
        if (start + 44 > end) return 0;
        s->sequence = be32(p); s->source_type = be32(p + 4); s->source_index = be32(p + 8); s->rate = be32(p + 12);
        s->pool = be32(p + 16); s->drops = be32(p + 20); s->input_format = be32(p + 24); s->input_if = be32(p + 28);
        s->output_format = be32(p + 32); s->output_if = be32(p + 36);
        count = be32(p + 40);
        s->source_id = 0;
        s->expanded = 1;
        position = start + 44;
    }
    if (count > 4) return 0;
    s->extended = s->expanded || !interface_known(s->input_format, s->input_if) ||
                  !interface_known(s->output_format, s->output_if);
    Py_ssize_t header_at = -1;
    s->has_switch = 0;
    s->extra_count = 0;
    s->has_gateway = 0;
    int has_router = 0;
    s->frame_length = s->stripped = s->header_length = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (position + 8 > end) return 0;
        uint32_t format = be32(data + position), length = be32(data + position + 4);
        position += 8;
        if ((Py_ssize_t)length > end - position) return 0;
        const unsigned char *r = data + position;
        if (format == 1 && header_at < 0 && length >= 16) {
            uint32_t header_protocol = be32(r);
            s->frame_length = be32(r + 4); s->stripped = be32(r + 8); s->header_length = be32(r + 12);
            if (header_protocol != 1 || s->header_length > length - 16) return 0;
            header_at = position + 16;
        } else if (format == 1001 && !s->has_switch && length >= 16) {
            s->has_switch = 1;
            for (int k = 0; k < 4; k++) s->switch_values[k] = be32(r + 4 * k);
        } else if (format == 1002 && !has_router) {
            Py_ssize_t after = address_end(data, position, position + length);
            if (after < 0 || after + 8 > position + (Py_ssize_t)length) return 0;
            has_router = 1;
            s->extra[s->extra_count].format = format;
            s->extra[s->extra_count].at = position;
            s->extra[s->extra_count++].end = position + length;
            s->extended = 1;
        } else if (format == 1003 && !s->has_gateway) {
            if (!gateway_valid(data, position, position + length, &s->src_as, &s->dst_as)) return 0;
            s->has_gateway = 1;
            s->extra[s->extra_count].format = format;
            s->extra[s->extra_count].at = position;
            s->extra[s->extra_count++].end = position + length;
            s->extended = 1;
        } else {
            return 0;
        }
        position += length;
    }
    if (header_at < 0 || s->header_length < 14) return 0;
    Py_ssize_t header_end = header_at + s->header_length, at = header_at + 14;
    const unsigned char *h = data + header_at;
    s->dst_mac = h; s->src_mac = h + 6;
    unsigned ethertype = be16(h + 12);
    s->vlan = -1;
    s->vlan_count = 0;
    while (ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100) {
        if (s->vlan_count == 2 || at + 4 > header_end) return 0;
        unsigned vlan = be16(data + at) & 0x0FFF;
        if (s->vlan_count++ == 0) s->vlan = (int)vlan; else s->inner_vlan = vlan;
        if (ethertype != 0x8100) s->extended = 1;
        ethertype = be16(data + at + 2);
        at += 4;
    }
    if (s->vlan_count > 1) s->extended = 1;
    const unsigned char *l3 = data + at;
    s->extension_count = 0;
    if (ethertype == 0x0800) {
        if (at + 20 > header_end) return 0;
        unsigned flags_fragment = be16(l3 + 6), ihl = l3[0] & 15;
        if (l3[0] >> 4 != 4 || ihl < 5 || (flags_fragment & 0x1FFF)) return 0;
        if (ihl != 5) s->extended = 1;
        s->tos = l3[1]; s->total_length = be16(l3 + 2); s->ip_id = be16(l3 + 4); s->ip_flags = flags_fragment >> 13;
        s->ttl = l3[8]; s->proto = l3[9]; s->src_ip = l3 + 12; s->dst_ip = l3 + 16;
        at += 4 * (Py_ssize_t)ihl;
    } else if (ethertype == 0x86DD) {
        if (at + 40 > header_end) return 0;
        uint32_t first_word = be32(l3);
        if (first_word >> 28 != 6) return 0;
        s->tos = (first_word >> 20) & 0xFF; s->total_length = be16(l3 + 4) + 40u; s->flow_label = first_word & 0xFFFFF;
        s->proto = l3[6]; s->ttl = l3[7]; s->src_ip = l3 + 8; s->dst_ip = l3 + 24;
        at += 40;
        while (ipv6_extension(s->proto)) {
            /* at most 16, as packet.parse_ipv6; each at least 8 bytes, which must all be there */
            if (s->extension_count == 16 || at + 8 > header_end) return 0;
            Py_ssize_t length;
            if (s->proto == 44) {
                if (be16(data + at + 2) >> 3) return 0;   /* a non-first fragment: no transport header follows */
                length = 8;
            } else if (s->proto == 51) {
                length = ((Py_ssize_t)data[at + 1] + 2) * 4;
            } else {
                length = 8 + (Py_ssize_t)data[at + 1] * 8;
            }
            s->extensions[s->extension_count++] = (unsigned char)s->proto;
            s->proto = data[at];
            at += length;
        }
        if (s->extension_count) s->extended = 1;
    } else {
        return 0;
    }
    s->ethertype = ethertype;
    s->tcp_flags = -1;
    s->has_ports = 1;
    s->icmp = 0;
    s->src_port = s->dst_port = 0;
    if (s->proto == 6) {
        if (at + 14 > header_end) return 0;
        s->tcp_flags = be16(data + at + 12) & 0x01FF;
    } else if (s->proto == 17) {
        if (at + 8 > header_end) return 0;
    } else if (s->proto == 132) {
        if (at + 4 > header_end) return 0;
        s->extended = 1;
    } else if (s->proto == 1 || s->proto == 58) {
        if (at + 2 > header_end) return 0;
        s->has_ports = 0;
        s->icmp = 1;
        s->src_port = data[at];
        s->dst_port = data[at + 1];
        s->extended = 1;
        return 1;
    } else {   /* no transport header packet.parse_transport reads: the protocol alone */
        s->has_ports = 0;
        s->extended = 1;
        return 1;
    }
    s->src_port = be16(data + at);
    s->dst_port = be16(data + at + 2);
    return 1;
}

/* The values common_flow_document computes from the parsed sample rather than copies from it; the dict builder
 * and the bulk writer both take them from here. */
typedef struct {
    unsigned long long rate, bytes, packets;   /* rate: the sample's, 1 for 0 */
    int ingress, unknown_direction, is_v4, tcp;
    unsigned char digest[20];   /* the Community ID's */
} Derived;

static void derive(const Sample *s, int renormalize, Derived *d) {
    d->rate = s->rate ? s->rate : 1;
    d->bytes = renormalize ? (unsigned long long)s->frame_length * d->rate : s->frame_length;
    d->packets = renormalize ? d->rate : 1;
    /* normalize.sflow._direction: whether the data source is the known input interface, else the output one */
    int input_known = interface_known(s->input_format, s->input_if);
    d->ingress = input_known && s->source_index == s->input_if;
    d->unknown_direction = !input_known && !(interface_known(s->output_format, s->output_if) &&
                                             s->source_index == s->output_if);
    d->is_v4 = s->ethertype == 0x0800;
    d->tcp = s->proto == 6;
    /* ICMP's type and code are in src_port and dst_port */
    community_id_digest(s->src_ip, s->dst_ip, d->is_v4 ? 4 : 16, (int)s->proto, s->src_port, s->dst_port, 0,
                        d->digest);
}

/* The integers of the sflow object, as (key, value) in common_flow_document's order: sflow_head's come before
 * header_protocol_name ("ethernet"), sflow_tail's after it and before the datagram's fields and the VLAN. */
typedef struct {
    int key;
    unsigned long long value;
} Pair;

#define PAIR(k, v) (out[n].key = (k), out[n].value = (unsigned long long)(v), n++)

static int sflow_head(const Sample *s, Pair out[12]) {
    int n = 0;
    PAIR(K_SAMPLE_SEQUENCE, s->sequence); PAIR(K_SOURCE_ID_TYPE, s->source_id >> 24);
    PAIR(K_SOURCE_ID_INDEX, s->source_id & 0xFFFFFF); PAIR(K_SAMPLING_RATE, s->rate); PAIR(K_SAMPLE_POOL, s->pool);
    PAIR(K_DROPS, s->drops); PAIR(K_INPUT_INTERFACE, s->input_if); PAIR(K_OUTPUT_INTERFACE, s->output_if);
    PAIR(K_HEADER_PROTOCOL, 1); PAIR(K_FRAME_LENGTH, s->frame_length); PAIR(K_STRIPPED, s->stripped);
    PAIR(K_HEADER_LENGTH, s->header_length);
    return n;
}

static int sflow_tail(const Sample *s, Pair out[11]) {
    static const int switch_keys[4] = {K_SRC_VLAN, K_SRC_PRIORITY, K_DST_VLAN, K_DST_PRIORITY};
    int n = 0;
    PAIR(K_ETHERTYPE, s->ethertype); PAIR(K_IP_TOS, s->tos); PAIR(K_IP_TTL, s->ttl);
    PAIR(K_IP_TOTAL_LENGTH, s->total_length);
    if (s->has_switch)
        for (int k = 0; k < 4; k++) PAIR(switch_keys[k], s->switch_values[k]);
    if (s->ethertype == 0x0800) {
        PAIR(K_IP_ID, s->ip_id); PAIR(K_IP_FLAGS, s->ip_flags);
    } else {
        PAIR(K_IPV6_FLOW_LABEL, s->flow_label);
    }
    if (s->tcp_flags >= 0) PAIR(K_TCP_FLAGS, s->tcp_flags);
    return n;
}

#undef PAIR

/* ---- the document as dicts (bulk=None) ---------------------------------------------------------------------- */

static int put_pairs(PyObject *d, const Pair *pairs, int n) {
    for (int i = 0; i < n; i++)
        if (put(d, pairs[i].key, PyLong_FromUnsignedLongLong(pairs[i].value)) < 0) return -1;
    return 0;
}

/* The sflow object, in common_flow_document's key order. */
static PyObject *sflow_fields(const Sample *s, PyObject *fields) {
    PyObject *sflow = _PyDict_NewPresized(32);
    if (sflow == NULL) return NULL;
    Pair pairs[12];
    if (put_pairs(sflow, pairs, sflow_head(s, pairs)) < 0 ||
        PyDict_SetItem(sflow, KEYS[K_HEADER_PROTOCOL_NAME], KEYS[V_ETHERNET]) < 0 ||
        put_pairs(sflow, pairs, sflow_tail(s, pairs)) < 0 || PyDict_Update(sflow, fields) < 0 ||
        (s->vlan >= 0 && put_u(sflow, K_VLAN, (unsigned long)s->vlan) < 0)) {
        Py_DECREF(sflow);
        return NULL;
    }
    untrack(sflow);
    return sflow;
}

static PyObject *network_fields(const Sample *s, const Derived *d, PyObject *community, const FlowAdditions *fa) {
    PyObject *network = _PyDict_NewPresized(8);
    if (network == NULL) return NULL;
    const FlowHit *direction = enrich_direction(fa);
    if (put(network, K_BYTES, PyLong_FromUnsignedLongLong(d->bytes)) < 0 ||
        put(network, K_PACKETS, PyLong_FromUnsignedLongLong(d->packets)) < 0 ||
        PyDict_SetItem(network, KEYS[K_DIRECTION],
                       direction ? direction->direction : KEYS[d->ingress ? V_INGRESS : V_EGRESS]) < 0 ||
        PyDict_SetItem(network, KEYS[K_TYPE], KEYS[d->is_v4 ? V_IPV4 : V_IPV6]) < 0 ||
        PyDict_SetItem(network, KEYS[K_IANA], KEYS[d->tcp ? V_SIX : V_SEVENTEEN]) < 0 ||
        PyDict_SetItem(network, KEYS[K_TRANSPORT], KEYS[d->tcp ? V_TCP : V_UDP]) < 0)
        goto fail;
    if (s->vlan >= 0 && put_nested(network, K_VLAN, K_PLAIN_ID, decimal_text((unsigned long long)s->vlan)) < 0)
        goto fail;
    if (PyDict_SetItem(network, KEYS[K_COMMUNITY], community) < 0) goto fail;
    untrack(network);
    return network;
fail:
    Py_DECREF(network);
    return NULL;
}

static PyObject *endpoint(const Derived *d, const unsigned char *ip, unsigned port, const unsigned char *mac,
                          const AddressHit *hit) {
    PyObject *object = PyDict_New();
    if (object == NULL) return NULL;
    if (put(object, K_IP, d->is_v4 ? ipv4_text(ip) : ipv6_text(ip)) < 0 ||
        put_u(object, K_PORT, port) < 0 || put(object, K_MAC, mac_text(mac)) < 0 ||
        enrich_dict_endpoint(object, hit) < 0) {
        Py_DECREF(object);
        return NULL;
    }
    untrack(object);
    return object;
}

static PyObject *event_fields(PyObject *timestamp) {
    PyObject *event = _PyDict_NewPresized(7);
    if (event == NULL) return NULL;
    if (PyDict_SetItem(event, KEYS[K_KIND], KEYS[V_EVENT]) < 0 ||
        put(event, K_CATEGORY, one_item_list(V_NETWORK)) < 0 || put(event, K_TYPE, one_item_list(V_CONNECTION)) < 0 ||
        PyDict_SetItem(event, KEYS[K_ACTION], KEYS[V_FLOW_SAMPLE]) < 0 ||
        PyDict_SetItem(event, KEYS[K_START], timestamp) < 0 || PyDict_SetItem(event, KEYS[K_END], timestamp) < 0 ||
        PyDict_SetItem(event, KEYS[K_DURATION], ZERO) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    untrack(event);
    return event;
}

static PyObject *observer_fields(const Sample *s, PyObject *agent, const Enrich *en) {
    PyObject *observer = PyDict_New();
    if (observer == NULL) return NULL;
    if (PyDict_SetItem(observer, KEYS[K_IP], agent) < 0 ||
        put(observer, K_INGRESS, interface_object(s->input_if, en)) < 0 ||
        put(observer, K_EGRESS, interface_object(s->output_if, en)) < 0 || enrich_dict_observer(observer, en) < 0) {
        Py_DECREF(observer);
        return NULL;
    }
    untrack(observer);
    return observer;
}

static PyObject *flow_fields(const Derived *d, PyObject *tag, const FlowAdditions *fa) {
    PyObject *flow = PyDict_New();
    if (flow == NULL) return NULL;
    if (put_u(flow, K_SAMPLING_RATE, (unsigned long)d->rate) < 0 ||
        put(flow, K_PLAIN_ID, community_flow_id(tag, d->digest)) < 0 || enrich_dict_flow(flow, fa) < 0)
        goto fail;
    untrack(flow);
    return flow;
fail:
    Py_DECREF(flow);
    return NULL;
}

/* common_flow_document in C, with the exporter's enrichment; NULL with an exception set on failure */
static PyObject *flow_document(const Sample *s, const Derived *d, Py_ssize_t index, PyObject *timestamp,
                               PyObject *id_prefix, PyObject *tag, PyObject *agent, PyObject *fields,
                               const Enrich *en) {
    FlowAdditions fa;
    size_t address_length = d->is_v4 ? 4 : 16;
    if (enrich_flow(en, &fa, s->src_ip, address_length, s->dst_ip, address_length) < 0) {
        enrich_flow_clear(&fa);
        return NULL;
    }
    PyObject *community = community_id_text(d->digest);
    if (community == NULL) {
        enrich_flow_clear(&fa);
        return NULL;
    }
    char digits[24];
    PyObject *parts[K_SFLOW + 1] = {NULL};
    parts[K_ID] = joined(id_prefix, digits, decimal(digits, (unsigned long long)index));
    parts[K_EVENT] = event_fields(timestamp);
    parts[K_OBSERVER] = observer_fields(s, agent, en);
    parts[K_NETWORK] = network_fields(s, d, community, &fa);
    parts[K_FLOW] = flow_fields(d, tag, &fa);
    parts[K_SOURCE] = endpoint(d, s->src_ip, s->src_port, s->src_mac, &fa.src);
    parts[K_DESTINATION] = endpoint(d, s->dst_ip, s->dst_port, s->dst_mac, &fa.dst);
    parts[K_SFLOW] = sflow_fields(s, fields);
    Py_DECREF(community);
    Py_INCREF(timestamp);
    parts[K_TIMESTAMP] = timestamp;
    PyObject *doc = _PyDict_NewPresized(K_SFLOW + 1);
    int failed = doc == NULL;
    for (int key = K_ID; key <= K_SFLOW; key++) {
        if (!failed && (parts[key] == NULL || PyDict_SetItem(doc, KEYS[key], parts[key]) < 0)) failed = 1;
        Py_XDECREF(parts[key]);
    }
    if (!failed && enrich_dict_document(doc, en, &fa) < 0) failed = 1;
    enrich_flow_clear(&fa);
    if (failed) {
        Py_XDECREF(doc);
        return NULL;
    }
    untrack(doc);
    return doc;
}

/* Unpacked and checked arguments of both entry points (borrowed references). */
typedef struct {
    PyObject *data, *timestamp, *id_prefix, *tag, *agent, *fields;
    int renormalize;
    Enrich en;   /* the agent's enrichment: the optional last argument */
} Context;

/* ---- the document as bulk lines (flowsink.bulk.encode_document of the dict above, written directly) ------- */

/* What every line of one call shares, its JSON written once. */
typedef struct {
    JsonBuf pre;              /* three pieces, one after the other: */
    Py_ssize_t head_end;      /* [0, head_end): the source line up to observer.ip's value */
    Py_ssize_t tag_end;       /* [head_end, tag_end): flow.id's opening quote and the agent's tag, escaped */
    Py_ssize_t fields_end;    /* [tag_end, fields_end): ,"agent_address":... the datagram's sflow fields */
    JsonBuf counter_pre;      /* a counter sample's source line up to observer.ip's value */
    const unsigned char *data;   /* the datagram */
    const char *action_head, *timestamp;   /* BulkFormat.action_head; @timestamp as UTF-8 */
    Py_ssize_t action_head_len, timestamp_len;
    char *id;                 /* id_prefix as UTF-8, room after it for an index's digits */
    Py_ssize_t id_prefix_len;
    int keep_ids;
    const Enrich *en;         /* the agent's enrichment */
} Bulk;

static void bulk_free(Bulk *k) {
    jb_free(&k->pre);
    jb_free(&k->counter_pre);
    PyMem_Free(k->id);
    k->id = NULL;
}

/* 0 when ready, -1 on error, 1 when the datagram's values are not written as orjson would (a lone surrogate, a
 * @timestamp with no YYYY-MM-DD day, a datagram field named like a sample's): its samples then become dicts and
 * flowsink.bulk encodes them. Either way bulk_free(k) follows. */
static int bulk_prepare(Bulk *k, const Context *c, PyObject *action_head, PyObject *keep_ids) {
    k->id = NULL;
    k->en = &c->en;
    k->counter_pre.data = NULL;
    k->data = (const unsigned char *)PyBytes_AS_STRING(c->data);
    if (jb_init(&k->pre, 512) < 0) return -1;
    if (!PyBytes_Check(action_head)) {
        PyErr_SetString(PyExc_TypeError, "sflow_samples: action_head must be bytes");
        return -1;
    }
    if ((k->keep_ids = PyObject_IsTrue(keep_ids)) < 0) return -1;
    k->action_head = PyBytes_AS_STRING(action_head);
    k->action_head_len = PyBytes_GET_SIZE(action_head);
    const char *prefix = PyUnicode_AsUTF8AndSize(c->id_prefix, &k->id_prefix_len);
    k->timestamp = PyUnicode_AsUTF8AndSize(c->timestamp, &k->timestamp_len);
    if (prefix == NULL || k->timestamp == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    if ((k->id = PyMem_Malloc((size_t)k->id_prefix_len + 24)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(k->id, prefix, (size_t)k->id_prefix_len);
    if (!PyDict_CheckExact(c->fields) || k->timestamp_len > INT_MAX) return 1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(c->fields, &pos, &key, &value)) {
        int clash = PySet_Contains(SFLOW_KEYS, key);
        if (clash != 0) return clash;   /* -1 for an unhashable key, as PyDict_Update would fail on it */
    }
    /* the action line once to learn whether it can be written at all (its day), then rewound */
    int rc = jb_action(&k->pre, k->action_head, k->action_head_len, "flows", k->timestamp, (int)k->timestamp_len,
                       NULL, 0, 0);
    if (rc != 0) return rc;
    k->pre.len = 0;
    if (JB_LIT(&k->pre, "{\"@timestamp\":") < 0 || (rc = jb_pystr(&k->pre, c->timestamp)) != 0 ||
        JB_LIT(&k->pre, ",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\"type\":[\"connection\"],"
                        "\"action\":\"sflow_flow_sample\",\"start\":") < 0 ||
        (rc = jb_pystr(&k->pre, c->timestamp)) != 0 || JB_LIT(&k->pre, ",\"end\":") < 0 ||
        (rc = jb_pystr(&k->pre, c->timestamp)) != 0 ||
        JB_LIT(&k->pre, ",\"duration\":0},\"observer\":{\"ip\":") < 0 || (rc = jb_pystr(&k->pre, c->agent)) != 0)
        return rc ? rc : -1;
    k->head_end = k->pre.len;
    if ((rc = jb_pystr(&k->pre, c->tag)) != 0) return rc;
    k->tag_end = --k->pre.len;   /* without its closing quote: the digest's hex follows */
    if (PyDict_GET_SIZE(c->fields) && jb_char(&k->pre, ',') < 0) return -1;
    if ((rc = jb_pydict_items(&k->pre, c->fields, 0)) != 0) return rc;
    k->fields_end = k->pre.len;
    JsonBuf *m = &k->counter_pre;
    if (jb_init(m, 256) < 0) return -1;
    if (JB_LIT(m, "{\"@timestamp\":") < 0 || (rc = jb_pystr(m, c->timestamp)) != 0 ||
        JB_LIT(m, ",\"event\":{\"kind\":\"metric\",\"category\":[\"network\"],\"type\":[\"info\"],"
                  "\"action\":\"sflow_counter_sample\",\"start\":") < 0 ||
        (rc = jb_pystr(m, c->timestamp)) != 0 || JB_LIT(m, ",\"end\":") < 0 || (rc = jb_pystr(m, c->timestamp)) != 0 ||
        JB_LIT(m, ",\"duration\":0},\"observer\":{\"ip\":") < 0 || (rc = jb_pystr(m, c->agent)) != 0)
        return rc ? rc : -1;
    return 0;
}

/* ,"<which>_interface":N and its siblings, as decode.sflow._interface names them; nothing for an unknown ifIndex */
static int interface_json(JsonBuf *b, const char *which, Py_ssize_t which_len, uint32_t format, uint32_t value) {
    const char *suffix;
    if (format == 0) {
        if (value == IF_UNKNOWN) return 0;
        suffix = "_interface\":";
    } else if (format == 1) {
        suffix = "_discard_reason\":";
    } else if (format == 2) {
        suffix = "_interface_count\":";
    } else {
        if (JB_LIT(b, ",\"") < 0 || jb_put(b, which, which_len) < 0 || JB_LIT(b, "_interface_format\":") < 0 ||
            jb_u64(b, format) < 0)
            return -1;
        suffix = "_interface_value\":";
    }
    if (JB_LIT(b, ",\"") < 0 || jb_put(b, which, which_len) < 0 || jb_put(b, suffix, (Py_ssize_t)strlen(suffix)) < 0)
        return -1;
    return jb_u64(b, value);
}

static int key_u64(JsonBuf *b, int key, unsigned long long value) {
    if (jb_char(b, ',') < 0 || jb_put(b, KEY_JSON[key], KEY_JSON_LEN[key]) < 0) return -1;
    return jb_u64(b, value);
}

/* {"ip":"..."[,"port":N],"mac":"..."[,"as":{..}][enrichment]} */
static int endpoint_json(JsonBuf *b, const Derived *d, const unsigned char *ip, int has_port, unsigned port,
                         const unsigned char *mac, long long as_number, const AddressHit *hit) {
    char text[INET6_ADDRSTRLEN];
    int n;
    if (JB_LIT(b, "{\"ip\":") < 0) return -1;
    if (d->is_v4) {
        if (jb_ipv4(b, ip) < 0) return -1;
    } else if ((n = ipv6_chars(ip, text)) < 0 || jb_text(b, text, n) < 0) {
        return -1;
    }
    if (has_port && (JB_LIT(b, ",\"port\":") < 0 || jb_u64(b, port) < 0)) return -1;
    if (JB_LIT(b, ",\"mac\":\"") < 0) return -1;
    mac_chars(mac, text);
    if (jb_put(b, text, 17) < 0 || jb_char(b, '"') < 0) return -1;
    /* the gateway record's AS number and the address entry's members: decided together (enrichment.h) */
    if (jb_enrich_endpoint_as(b, hit, as_number) < 0) return -1;
    return jb_char(b, '}');
}

/* ,"<key>":"<address>" for an sFlow address at data[at:], nothing for type 0; the offset after it */
static Py_ssize_t address_json(JsonBuf *b, const char *key, const unsigned char *data, Py_ssize_t at) {
    uint32_t kind = be32(data + at);
    if (kind == 0) return at + 4;
    if (JB_LIT(b, ",\"") < 0 || jb_put(b, key, (Py_ssize_t)strlen(key)) < 0 || JB_LIT(b, "\":") < 0) return -1;
    if (kind == 1) return jb_ipv4(b, data + at + 4) < 0 ? -1 : at + 8;
    char text[INET6_ADDRSTRLEN];
    int n = ipv6_chars(data + at + 4, text);
    return n < 0 || jb_text(b, text, n) < 0 ? -1 : at + 20;
}

/* [a,b,...] of count 32-bit words at data[at:] */
static int u32_list_json(JsonBuf *b, const unsigned char *data, Py_ssize_t at, Py_ssize_t count) {
    if (jb_char(b, '[') < 0) return -1;
    for (Py_ssize_t i = 0; i < count; i++)
        if ((i && jb_char(b, ',') < 0) || jb_u64(b, be32(data + at + 4 * i)) < 0) return -1;
    return jb_char(b, ']');
}

/* the extended router's or gateway's keys, as decode.sflow._flow_router/_flow_gateway set them (validated by
 * parse_sample) */
static int extra_record_json(JsonBuf *b, const unsigned char *data, uint32_t format, Py_ssize_t at) {
    if (format == 1002) {
        Py_ssize_t p = address_json(b, "next_hop_address", data, at);
        if (p < 0) return -1;
        return JB_LIT(b, ",\"src_mask_len\":") < 0 || jb_u64(b, be32(data + p)) < 0 ||
               JB_LIT(b, ",\"dst_mask_len\":") < 0 || jb_u64(b, be32(data + p + 4)) < 0 ? -1 : 0;
    }
    Py_ssize_t p = address_json(b, "bgp_next_hop_address", data, at);
    if (p < 0) return -1;
    uint32_t asn = be32(data + p), segments = be32(data + p + 12), dst_as = asn;
    if (JB_LIT(b, ",\"as\":") < 0 || jb_u64(b, asn) < 0 || JB_LIT(b, ",\"src_as\":") < 0 ||
        jb_u64(b, be32(data + p + 4)) < 0 || JB_LIT(b, ",\"src_peer_as\":") < 0 || jb_u64(b, be32(data + p + 8)) < 0 ||
        JB_LIT(b, ",\"dst_as_path\":[") < 0)
        return -1;
    p += 16;
    int first = 1;
    for (uint32_t i = 0; i < segments; i++) {
        uint32_t length = be32(data + p + 4);
        p += 8;
        for (uint32_t j = 0; j < length; j++, p += 4) {
            if ((!first && jb_char(b, ',') < 0) || jb_u64(b, dst_as = be32(data + p)) < 0) return -1;
            first = 0;
        }
    }
    uint32_t communities = be32(data + p);
    if (JB_LIT(b, "],\"dst_as\":") < 0 || jb_u64(b, dst_as) < 0 || JB_LIT(b, ",\"communities\":") < 0 ||
        u32_list_json(b, data, p + 4, communities) < 0)
        return -1;
    p += 4 + 4 * (Py_ssize_t)communities;
    return JB_LIT(b, ",\"local_pref\":") < 0 || jb_u64(b, be32(data + p)) < 0 ? -1 : 0;
}

/* ,"direction":.. the enrichment's (direction not NULL), else normalize.sflow._direction's */
static int direction_json(JsonBuf *b, const FlowHit *direction, const Derived *d) {
    if (JB_LIT(b, ",\"direction\":") < 0) return -1;
    if (direction != NULL) return jb_put(b, direction->direction_json, direction->direction_json_len);
    return d->ingress ? JB_LIT(b, "\"ingress\"") : d->unknown_direction ? JB_LIT(b, "\"unknown\"")
                                                                       : JB_LIT(b, "\"egress\"");
}

/* One sample's action and source lines, appended to b: 0, or -1 on error (b then holds a partial line). The
 * document is normalize.sflow.flow_document's for the sample, in its key order (common_flow_document's for the
 * common case), with the flow's additions fa. */
static int bulk_lines_of(JsonBuf *b, const Bulk *k, const Sample *s, const Derived *d, Py_ssize_t index,
                         const FlowAdditions *fa) {
    int digits = decimal(k->id + k->id_prefix_len, (unsigned long long)index);
    int rc = jb_action(b, k->action_head, k->action_head_len, "flows", k->timestamp, (int)k->timestamp_len, k->id,
                       k->id_prefix_len + digits, k->keep_ids);
    if (rc != 0) return rc < 0 ? -1 : (PyErr_SetString(PyExc_SystemError, "action line refused"), -1);
    if (jb_put(b, k->pre.data, k->head_end) < 0) return -1;
    if (interface_known(s->input_format, s->input_if) &&
        (JB_LIT(b, ",\"ingress\":") < 0 || jb_enrich_interface(b, k->en, s->input_if, NULL) < 0))
        return -1;
    if (interface_known(s->output_format, s->output_if) &&
        (JB_LIT(b, ",\"egress\":") < 0 || jb_enrich_interface(b, k->en, s->output_if, NULL) < 0))
        return -1;
    if (jb_enrich_observer(b, k->en) < 0) return -1;
    if (JB_LIT(b, "},\"network\":{\"bytes\":") < 0 || jb_u64(b, d->bytes) < 0 ||
        JB_LIT(b, ",\"packets\":") < 0 || jb_u64(b, d->packets) < 0 ||
        direction_json(b, enrich_direction(fa), d) < 0 ||
        (d->is_v4 ? JB_LIT(b, ",\"type\":\"ipv4\"") : JB_LIT(b, ",\"type\":\"ipv6\"")) < 0)
        return -1;
    if (s->proto == 6 || s->proto == 17) {
        if ((d->tcp ? JB_LIT(b, ",\"iana_number\":\"6\",\"transport\":\"tcp\"")
                    : JB_LIT(b, ",\"iana_number\":\"17\",\"transport\":\"udp\"")) < 0)
            return -1;
    } else {
        const char *name = transport_name(s->proto);
        if (JB_LIT(b, ",\"iana_number\":\"") < 0 || jb_u64(b, s->proto) < 0 || jb_char(b, '"') < 0) return -1;
        if (name != NULL && (JB_LIT(b, ",\"transport\":\"") < 0 || jb_put(b, name, (Py_ssize_t)strlen(name)) < 0 ||
                             jb_char(b, '"') < 0))
            return -1;
    }
    if (s->vlan >= 0 && (JB_LIT(b, ",\"vlan\":{\"id\":\"") < 0 || jb_u64(b, (unsigned long long)s->vlan) < 0 ||
                         JB_LIT(b, "\"}") < 0))
        return -1;
    if (s->vlan_count > 1 && (JB_LIT(b, ",\"inner\":{\"vlan\":{\"id\":\"") < 0 || jb_u64(b, s->inner_vlan) < 0 ||
                              JB_LIT(b, "\"}}") < 0))
        return -1;
    if (JB_LIT(b, ",\"community_id\":") < 0 || jb_community(b, d->digest) < 0) return -1;
    /* flow.id: the agent's tag, then hex of the digest's first 10 bytes */
    if (JB_LIT(b, "},\"flow\":{\"sampling_rate\":") < 0 || jb_u64(b, d->rate) < 0 || JB_LIT(b, ",\"id\":") < 0 ||
        jb_put(b, k->pre.data + k->head_end, k->tag_end - k->head_end) < 0 || jb_hex(b, d->digest, 10) < 0 ||
        jb_char(b, '"') < 0 || jb_enrich_flow(b, fa) < 0)
        return -1;
    if (JB_LIT(b, "},\"source\":") < 0 ||
        endpoint_json(b, d, s->src_ip, s->has_ports, s->src_port, s->src_mac,
                      s->has_gateway ? (long long)s->src_as : -1LL, &fa->src) < 0 ||
        JB_LIT(b, ",\"destination\":") < 0 ||
        endpoint_json(b, d, s->dst_ip, s->has_ports, s->dst_port, s->dst_mac,
                      s->has_gateway ? (long long)s->dst_as : -1LL, &fa->dst) < 0)
        return -1;
    if (JB_LIT(b, ",\"sflow\":{\"sample_sequence\":") < 0 || jb_u64(b, s->sequence) < 0 ||
        key_u64(b, K_SOURCE_ID_TYPE, s->source_type) < 0 || key_u64(b, K_SOURCE_ID_INDEX, s->source_index) < 0 ||
        key_u64(b, K_SAMPLING_RATE, s->rate) < 0 || key_u64(b, K_SAMPLE_POOL, s->pool) < 0 ||
        key_u64(b, K_DROPS, s->drops) < 0 || interface_json(b, "input", 5, s->input_format, s->input_if) < 0 ||
        interface_json(b, "output", 6, s->output_format, s->output_if) < 0 ||
        (s->expanded && JB_LIT(b, ",\"expanded\":true") < 0) ||
        JB_LIT(b, ",\"header_protocol\":1,\"frame_length\":") < 0 || jb_u64(b, s->frame_length) < 0 ||
        key_u64(b, K_STRIPPED, s->stripped) < 0 || key_u64(b, K_HEADER_LENGTH, s->header_length) < 0 ||
        JB_LIT(b, ",\"header_protocol_name\":\"ethernet\"") < 0 || key_u64(b, K_ETHERTYPE, s->ethertype) < 0 ||
        key_u64(b, K_IP_TOS, s->tos) < 0 || key_u64(b, K_IP_TTL, s->ttl) < 0 ||
        key_u64(b, K_IP_TOTAL_LENGTH, s->total_length) < 0)
        return -1;
    if (s->has_switch) {
        static const int switch_keys[4] = {K_SRC_VLAN, K_SRC_PRIORITY, K_DST_VLAN, K_DST_PRIORITY};
        for (int i = 0; i < 4; i++)
            if (key_u64(b, switch_keys[i], s->switch_values[i]) < 0) return -1;
    }
    if (d->is_v4) {
        if (key_u64(b, K_IP_ID, s->ip_id) < 0 || key_u64(b, K_IP_FLAGS, s->ip_flags) < 0) return -1;
    } else {
        if (key_u64(b, K_IPV6_FLOW_LABEL, s->flow_label) < 0) return -1;
        if (s->extension_count) {
            if (JB_LIT(b, ",\"ipv6_extension_headers\":[") < 0) return -1;
            for (int i = 0; i < s->extension_count; i++)
                if ((i && jb_char(b, ',') < 0) || jb_u64(b, s->extensions[i]) < 0) return -1;
            if (jb_char(b, ']') < 0) return -1;
        }
    }
    if (s->tcp_flags >= 0 && key_u64(b, K_TCP_FLAGS, (unsigned long long)s->tcp_flags) < 0) return -1;
    if (s->icmp && (JB_LIT(b, ",\"icmp_type\":") < 0 || jb_u64(b, s->src_port) < 0 ||
                    JB_LIT(b, ",\"icmp_code\":") < 0 || jb_u64(b, s->dst_port) < 0))
        return -1;
    for (int i = 0; i < s->extra_count; i++)
        if (extra_record_json(b, k->data, s->extra[i].format, s->extra[i].at) < 0) return -1;
    if (jb_put(b, k->pre.data + k->tag_end, k->fields_end - k->tag_end) < 0) return -1;
    if (s->vlan >= 0 && (JB_LIT(b, ",\"vlan\":") < 0 || jb_u64(b, (unsigned long long)s->vlan) < 0)) return -1;
    if (s->vlan_count > 1 && (JB_LIT(b, ",\"vlans\":[") < 0 || jb_u64(b, (unsigned long long)s->vlan) < 0 ||
                              jb_char(b, ',') < 0 || jb_u64(b, s->inner_vlan) < 0 || jb_char(b, ']') < 0))
        return -1;
    if (jb_char(b, '}') < 0 || jb_enrich_document(b, k->en, fa) < 0) return -1;
    return JB_LIT(b, "}\n");
}

/* bulk_lines_of with the sample's additions looked up */
static int bulk_lines(JsonBuf *b, const Bulk *k, const Sample *s, const Derived *d, Py_ssize_t index) {
    FlowAdditions fa;
    size_t address_length = d->is_v4 ? 4 : 16;
    int rc = enrich_flow(k->en, &fa, s->src_ip, address_length, s->dst_ip, address_length);
    if (rc == 0) rc = bulk_lines_of(b, k, s, d, index, &fa);
    enrich_flow_clear(&fa);
    return rc;
}

/* A counter sample the bulk writer takes: the generic interface, Ethernet and port name records switches send for
 * each port (any of them, once each; a port name in ASCII); anything else is left to the Python path. */
typedef struct {
    uint32_t sequence, source_type, source_index;
    int expanded;
    const unsigned char *interface, *ethernet;   /* the records' data, NULL when absent */
    const unsigned char *port_name;   /* the port name record's text (ASCII), NULL when absent */
    uint32_t port_name_length;
} Counters;

/* fmt: 2 a counter sample, 4 an expanded one; 1 when [start, end) is one the writer takes */
static int parse_counters(const unsigned char *data, Py_ssize_t start, Py_ssize_t end, uint32_t fmt, Counters *c) {
    const unsigned char *p = data + start;
    uint32_t count;
    Py_ssize_t position;
    if (fmt == 2) {
        if (start + 12 > end) return 0;
        uint32_t source_id = be32(p + 4);
        c->sequence = be32(p); c->source_type = source_id >> 24; c->source_index = source_id & 0xFFFFFF;
        count = be32(p + 8);
        position = start + 12;
    } else {
        if (start + 16 > end) return 0;
        c->sequence = be32(p); c->source_type = be32(p + 4); c->source_index = be32(p + 8);
        count = be32(p + 12);
        position = start + 16;
    }
    c->expanded = fmt == 4;
    c->interface = c->ethernet = c->port_name = NULL;
    c->port_name_length = 0;
    if (count > 3) return 0;
    for (uint32_t i = 0; i < count; i++) {
        if (position + 8 > end) return 0;
        uint32_t format = be32(data + position), length = be32(data + position + 4);
        position += 8;
        if ((Py_ssize_t)length > end - position) return 0;
        /* decode.sflow's _IF_COUNTERS (88 bytes) and _ETH_COUNTERS (52); a later record of a format replaces
         * the earlier one there, so a repeated one is left to it */
        if (format == 1 && c->interface == NULL && length >= 88) c->interface = data + position;
        else if (format == 2 && c->ethernet == NULL && length >= 52) c->ethernet = data + position;
        else if (format == 1005 && c->port_name == NULL && length >= 4) {
            /* decode.sflow._opaque: its length word, then the text; UTF-8 decoding of ASCII changes nothing */
            uint32_t n = be32(data + position);
            if (n > length - 4) return 0;
            for (uint32_t j = 0; j < n; j++)
                if (data[position + 4 + j] >= 0x80) return 0;
            c->port_name = data + position + 4;
            c->port_name_length = n;
        } else {
            return 0;
        }
        position += length;
    }
    return 1;
}

/* decode.sflow._IF_COUNTER_NAMES with their widths, then _ETH_COUNTER_NAMES (all 32-bit) */
static const struct { const char *key; int wide; } IF_COUNTERS[19] = {
    {"\"if_index\":", 0}, {"\"if_type\":", 0}, {"\"if_speed\":", 1}, {"\"if_direction\":", 0},
    {"\"if_status\":", 0}, {"\"if_in_octets\":", 1}, {"\"if_in_ucast_pkts\":", 0},
    {"\"if_in_multicast_pkts\":", 0}, {"\"if_in_broadcast_pkts\":", 0}, {"\"if_in_discards\":", 0},
    {"\"if_in_errors\":", 0}, {"\"if_in_unknown_protos\":", 0}, {"\"if_out_octets\":", 1},
    {"\"if_out_ucast_pkts\":", 0}, {"\"if_out_multicast_pkts\":", 0}, {"\"if_out_broadcast_pkts\":", 0},
    {"\"if_out_discards\":", 0}, {"\"if_out_errors\":", 0}, {"\"if_promiscuous_mode\":", 0},
};
static const char *ETH_COUNTERS[13] = {
    "\"alignment_errors\":", "\"fcs_errors\":", "\"single_collision_frames\":", "\"multiple_collision_frames\":",
    "\"sqe_test_errors\":", "\"deferred_transmissions\":", "\"late_collisions\":", "\"excessive_collisions\":",
    "\"internal_mac_transmit_errors\":", "\"carrier_sense_errors\":", "\"frame_too_longs\":",
    "\"internal_mac_receive_errors\":", "\"symbol_errors\":",
};

static uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* normalize.sflow.counter_document's action and source lines */
static int counter_lines(JsonBuf *b, const Bulk *k, const Counters *c, Py_ssize_t index) {
    int digits = decimal(k->id + k->id_prefix_len, (unsigned long long)index);
    int rc = jb_action(b, k->action_head, k->action_head_len, "meta", k->timestamp, (int)k->timestamp_len, k->id,
                       k->id_prefix_len + digits, k->keep_ids);
    if (rc != 0) return rc < 0 ? -1 : (PyErr_SetString(PyExc_SystemError, "action line refused"), -1);
    if (jb_put(b, k->counter_pre.data, k->counter_pre.len) < 0) return -1;
    if (c->interface != NULL) {
        InterfaceHit hit;
        int configured = enrich_interface(k->en, be32(c->interface), &hit);
        if (configured < 0) return -1;
        if (JB_LIT(b, ",\"ingress\":{\"interface\":{\"id\":\"") < 0 || jb_u64(b, be32(c->interface)) < 0 ||
            jb_char(b, '"') < 0)
            return -1;
        if (configured && hit.name != NULL) {   /* the configured name wins over the port name record's */
            if (jb_put(b, hit.name_json, hit.name_json_len) < 0) return -1;
        } else if (c->port_name != NULL && (JB_LIT(b, ",\"name\":") < 0 ||
                                            jb_text(b, (const char *)c->port_name, c->port_name_length) < 0)) {
            return -1;
        }
        if (configured && hit.tail_json_len && jb_put(b, hit.tail_json, hit.tail_json_len) < 0) return -1;
        if (JB_LIT(b, "}}") < 0) return -1;
    }
    if (jb_enrich_observer(b, k->en) < 0) return -1;
    if (JB_LIT(b, "},\"sflow\":{\"sample_sequence\":") < 0 || jb_u64(b, c->sequence) < 0 ||
        key_u64(b, K_SOURCE_ID_TYPE, c->source_type) < 0 || key_u64(b, K_SOURCE_ID_INDEX, c->source_index) < 0 ||
        (c->expanded && JB_LIT(b, ",\"expanded\":true") < 0) || JB_LIT(b, ",\"counters\":{") < 0)
        return -1;
    if (c->interface != NULL) {
        const unsigned char *r = c->interface;
        if (JB_LIT(b, "\"interface\":{") < 0) return -1;
        for (int i = 0; i < 19; i++) {
            if ((i && jb_char(b, ',') < 0) || jb_put(b, IF_COUNTERS[i].key, (Py_ssize_t)strlen(IF_COUNTERS[i].key)) < 0 ||
                jb_u64(b, IF_COUNTERS[i].wide ? be64(r) : be32(r)) < 0)
                return -1;
            r += IF_COUNTERS[i].wide ? 8 : 4;
        }
        uint32_t status = be32(c->interface + 20);
        if ((status & 1 ? JB_LIT(b, ",\"if_admin_status\":\"up\"") : JB_LIT(b, ",\"if_admin_status\":\"down\"")) < 0 ||
            (status & 2 ? JB_LIT(b, ",\"if_oper_status\":\"up\"}") : JB_LIT(b, ",\"if_oper_status\":\"down\"}")) < 0)
            return -1;
    }
    if (c->ethernet != NULL) {
        if ((c->interface != NULL && jb_char(b, ',') < 0) || JB_LIT(b, "\"ethernet\":{") < 0) return -1;
        for (int i = 0; i < 13; i++)
            if ((i && jb_char(b, ',') < 0) || jb_put(b, ETH_COUNTERS[i], (Py_ssize_t)strlen(ETH_COUNTERS[i])) < 0 ||
                jb_u64(b, be32(c->ethernet + 4 * i)) < 0)
                return -1;
        if (jb_char(b, '}') < 0) return -1;
    }
    if (c->port_name != NULL &&
        (((c->interface != NULL || c->ethernet != NULL) && jb_char(b, ',') < 0) || JB_LIT(b, "\"port_name\":") < 0 ||
         jb_text(b, (const char *)c->port_name, c->port_name_length) < 0))
        return -1;
    if (jb_char(b, '}') < 0 || jb_put(b, k->pre.data + k->tag_end, k->fields_end - k->tag_end) < 0 ||
        jb_char(b, '}') < 0 || jb_enrich_document(b, k->en, NULL) < 0)
        return -1;
    return JB_LIT(b, "}\n");
}

/* the context arguments, and the optional enrichment (NULL: none) */
static int read_context(PyObject *const *args, PyObject *enrichment, Context *c) {
    if (enrich_read(&c->en, enrichment) < 0) return -1;
    c->data = args[0]; c->timestamp = args[1]; c->id_prefix = args[2]; c->tag = args[3]; c->agent = args[4];
    c->fields = args[5];
    if (!PyBytes_Check(c->data) || !PyUnicode_Check(c->timestamp) || !PyUnicode_Check(c->id_prefix) ||
        !PyUnicode_Check(c->tag) || !PyUnicode_Check(c->agent) || !PyDict_Check(c->fields)) {
        PyErr_SetString(PyExc_TypeError, "expected data: bytes, timestamp, id_prefix, tag, agent: str, fields: dict");
        return -1;
    }
    c->renormalize = PyObject_IsTrue(args[6]);
    return c->renormalize < 0 ? -1 : 0;
}

static int read_sizes(PyObject *const *args, Py_ssize_t n, Py_ssize_t *out) {
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsSsize_t(args[i]);
        if (out[i] == -1 && PyErr_Occurred()) return -1;
        if (out[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "offsets, indexes and counts cannot be negative");
            return -1;
        }
    }
    return 0;
}

/* sflow_flow_sample(data, timestamp, id_prefix, tag, agent, fields, renormalize, start, end, index[, enrichment])
 * -> (document, sample_sequence, source_id), or None when the sample is not the common case */
PyObject *py_sflow_flow_sample(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Context c;
    Py_ssize_t sizes[3];
    if (nargs != 10 && nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "sflow_flow_sample takes 10 or 11 arguments");
        return NULL;
    }
    if (read_context(args, nargs == 11 ? args[10] : NULL, &c) < 0 || read_sizes(args + 7, 3, sizes) < 0)
        return NULL;
    if (sizes[1] > PyBytes_GET_SIZE(c.data) || sizes[0] > sizes[1]) {
        PyErr_SetString(PyExc_ValueError, "sflow_flow_sample: sample bounds outside the data");
        return NULL;
    }
    Sample s;
    Derived d;
    if (!parse_sample((const unsigned char *)PyBytes_AS_STRING(c.data), sizes[0], sizes[1], 1, &s) || s.extended)
        Py_RETURN_NONE;
    derive(&s, c.renormalize, &d);
    PyObject *doc = flow_document(&s, &d, sizes[2], c.timestamp, c.id_prefix, c.tag, c.agent, c.fields, &c.en);
    if (doc == NULL) return NULL;
    return Py_BuildValue("(Nkk)", doc, (unsigned long)s.sequence, (unsigned long)s.source_id);
}

static PyObject *FLOW_KIND, *COUNTER_KIND;   /* "flow", "counter": the first item of a runs key */

/* decode.sflow._extend_run_of for a sample's (kind, source id, sequence), on the same runs dict */
static int extend_run(PyObject *runs, PyObject *kind, uint32_t source_type, uint32_t source_index,
                      uint32_t sequence) {
    PyObject *key = Py_BuildValue("(Okk)", kind, (unsigned long)source_type, (unsigned long)source_index);
    if (key == NULL) return -1;
    PyObject *run = PyDict_GetItemWithError(runs, key);
    int rc = -1;
    if (run == NULL) {
        if (!PyErr_Occurred()) {
            PyObject *fresh = Py_BuildValue("[kn]", (unsigned long)sequence, (Py_ssize_t)1);
            if (fresh != NULL) { rc = PyDict_SetItem(runs, key, fresh); Py_DECREF(fresh); }
        }
        Py_DECREF(key);
        return rc;
    }
    unsigned long long first, length;
    if (!PyList_Check(run) || PyList_GET_SIZE(run) != 2) {
        PyErr_SetString(PyExc_TypeError, "a run is a [first, length] list");
        Py_DECREF(key);
        return -1;
    }
    first = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(run, 0));
    length = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(run, 1));
    if (PyErr_Occurred()) { Py_DECREF(key); return -1; }
    if (((first + length) & 0xFFFFFFFFull) == sequence) {
        rc = PyList_SetItem(run, 1, PyLong_FromUnsignedLongLong(length + 1));
    } else {   /* out of order within the datagram: tracked on its own, under the key and the runs so far */
        PyObject *own_key = Py_BuildValue("(OkkN)", kind, (unsigned long)source_type, (unsigned long)source_index,
                                          PyLong_FromSsize_t(PyDict_GET_SIZE(runs)));
        PyObject *fresh = Py_BuildValue("[kn]", (unsigned long)sequence, (Py_ssize_t)1);
        if (own_key != NULL && fresh != NULL) rc = PyDict_SetItem(runs, own_key, fresh);
        Py_XDECREF(own_key);
        Py_XDECREF(fresh);
    }
    Py_DECREF(key);
    return rc;
}

/* sflow_samples(data, timestamp, id_prefix, tag, agent, fields, renormalize, offset, index, count, documents, runs
 *               [, encoded, action_head, keep_ids][, enrichment])
 *   -> (offset, index, flow samples built, counter samples built)
 * decodes the datagram's samples from ``offset`` (sample ``index`` of ``count``) while they are common flow samples
 * (or, writing bulk lines, the flow and counter samples the writers take), extending runs; stops at the first that
 * is not (or runs past the data), which the Python path then decodes. One call per run of samples instead of one
 * per sample. Each becomes a document dict appended to documents or, given the encoded list and a BulkFormat's
 * c_format, its bulk lines (bytes) appended to encoded; when the datagram's values cannot be written as orjson
 * would, dicts again (flowsink.bulk encodes them). */
PyObject *py_sflow_samples(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    Context c;
    Py_ssize_t sizes[3];
    if (nargs != 12 && nargs != 13 && nargs != 15 && nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "sflow_samples takes 12, 13, 15 or 16 arguments");
        return NULL;
    }
    /* the enrichment is the optional last argument, after the optional bulk format */
    if (read_context(args, nargs == 13 || nargs == 16 ? args[nargs - 1] : NULL, &c) < 0 ||
        read_sizes(args + 7, 3, sizes) < 0)
        return NULL;
    PyObject *documents = args[10], *runs = args[11], *encoded = nargs >= 15 ? args[12] : NULL;
    if (!PyList_Check(documents) || !PyDict_Check(runs) || (encoded != NULL && !PyList_Check(encoded))) {
        PyErr_SetString(PyExc_TypeError, "sflow_samples: documents and encoded must be lists, runs a dict");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(c.data);
    Py_ssize_t end = PyBytes_GET_SIZE(c.data), offset = sizes[0], index = sizes[1], count = sizes[2], built = 0,
               counter_samples = 0;
    if (offset > end) {
        PyErr_SetString(PyExc_ValueError, "sflow_samples: offset past the data");
        return NULL;
    }
    Bulk bulk;
    JsonBuf out = {NULL, 0, 0};
    int writing = 0;
    if (encoded != NULL) {
        writing = bulk_prepare(&bulk, &c, args[13], args[14]);
        if (writing == 0) writing = jb_init(&out, 4096) < 0 ? -1 : 1;
        else if (writing == 1) writing = 0;
        if (writing < 0) goto fail;
    }
    Sample s;
    Derived d;
    for (; index < count; index++) {
        if (offset + 8 > end) break;
        uint32_t format = be32(data + offset);
        Py_ssize_t length = be32(data + offset + 4);
        if (length > end - offset - 8) break;
        if ((format == 2 || format == 4) && writing) {
            Counters counters;
            if (!parse_counters(data, offset + 8, offset + 8 + length, format, &counters)) break;
            if (counter_lines(&out, &bulk, &counters, index) < 0) goto fail;
            PyObject *line = jb_take(&out, 0);
            if (line == NULL) goto fail;
            int rc = PyList_Append(encoded, line);
            Py_DECREF(line);
            if (rc < 0 || extend_run(runs, COUNTER_KIND, counters.source_type, counters.source_index,
                                     counters.sequence) < 0)
                goto fail;
            offset += 8 + length;
            counter_samples++;
            continue;
        }
        if (format != 1 && format != 3) break;
        /* the less common samples only as bulk lines: as dicts the Python path builds them */
        if (!parse_sample(data, offset + 8, offset + 8 + length, format, &s) || (s.extended && !writing)) break;
        derive(&s, c.renormalize, &d);
        PyObject *item, *into = documents;
        if (writing) {
            if (bulk_lines(&out, &bulk, &s, &d, index) < 0) goto fail;
            item = jb_take(&out, 0);
            into = encoded;
        } else {
            item = flow_document(&s, &d, index, c.timestamp, c.id_prefix, c.tag, c.agent, c.fields, &c.en);
        }
        if (item == NULL) goto fail;
        int rc = PyList_Append(into, item);
        Py_DECREF(item);
        if (rc < 0 || extend_run(runs, FLOW_KIND, s.source_type, s.source_index, s.sequence) < 0) goto fail;
        offset += 8 + length;
        built++;
    }
    if (encoded != NULL) bulk_free(&bulk);
    jb_free(&out);
    return Py_BuildValue("(nnnn)", offset, index, built, counter_samples);
fail:
    if (encoded != NULL) bulk_free(&bulk);
    jb_free(&out);
    return NULL;
}

/* encode_documents(documents, encoded, action_head, keep_ids) -> written: documents the Python path built (the
 * samples sflow_samples leaves to it) as bulk lines appended to encoded; those jb_document cannot write stay in
 * documents, in their order, for flowsink.bulk. */
PyObject *py_encode_documents(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode_documents(documents: list, encoded: list, action_head: bytes, "
                                         "keep_ids)");
        return NULL;
    }
    PyObject *documents = args[0], *encoded = args[1];
    int keep_ids = PyObject_IsTrue(args[3]);
    JsonBuf b;
    if (keep_ids < 0 || jb_init(&b, 4096) < 0) return NULL;
    Py_ssize_t kept = 0, written = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(documents); i++) {
        PyObject *doc = PyList_GET_ITEM(documents, i);
        Py_INCREF(doc);
        int rc = jb_document(&b, doc, PyBytes_AS_STRING(args[2]), PyBytes_GET_SIZE(args[2]), keep_ids);
        if (rc == 1) {   /* compacted towards the front (the item it replaces was written already), reference given */
            if (PyList_SetItem(documents, kept++, doc) < 0) goto fail;
            continue;
        }
        Py_DECREF(doc);
        if (rc < 0) goto fail;
        PyObject *line = jb_take(&b, 0);
        if (line == NULL || PyList_Append(encoded, line) < 0) {
            Py_XDECREF(line);
            goto fail;
        }
        Py_DECREF(line);
        written++;
    }
    jb_free(&b);
    if (PyList_SetSlice(documents, kept, PyList_GET_SIZE(documents), NULL) < 0) return NULL;
    return PyLong_FromSsize_t(written);
fail:
    jb_free(&b);
    return NULL;
}

int sflow_init(void) {
    for (int i = 0; i < K_COUNT; i++)
        if ((KEYS[i] = PyUnicode_InternFromString(KEY_TEXT[i])) == NULL) return -1;
    for (int i = 0; i < K_COUNT; i++) {
        KEY_JSON_LEN[i] = snprintf(KEY_JSON[i], sizeof KEY_JSON[i], "\"%s\":", KEY_TEXT[i]);
        if (KEY_JSON_LEN[i] >= (int)sizeof KEY_JSON[i]) {
            PyErr_SetString(PyExc_SystemError, "a key longer than KEY_JSON holds");
            return -1;
        }
    }
    if ((SFLOW_KEYS = PySet_New(NULL)) == NULL) return -1;
    for (int i = K_SAMPLE_SEQUENCE; i <= K_TCP_FLAGS; i++)
        if (PySet_Add(SFLOW_KEYS, KEYS[i]) < 0) return -1;
    if (PySet_Add(SFLOW_KEYS, KEYS[K_SAMPLING_RATE]) < 0 || PySet_Add(SFLOW_KEYS, KEYS[K_VLAN]) < 0) return -1;
    static const char *more_keys[] = {
        "input_discard_reason", "input_interface_count", "input_interface_format", "input_interface_value",
        "output_discard_reason", "output_interface_count", "output_interface_format", "output_interface_value",
        "expanded", "ipv6_extension_headers", "icmp_type", "icmp_code", "vlans", "counters", "next_hop_address",
        "src_mask_len", "dst_mask_len", "bgp_next_hop_address", "as", "src_as", "src_peer_as", "dst_as_path",
        "dst_as", "communities", "local_pref",
    };
    for (size_t i = 0; i < sizeof more_keys / sizeof more_keys[0]; i++) {
        PyObject *key = PyUnicode_InternFromString(more_keys[i]);
        int rc = key == NULL ? -1 : PySet_Add(SFLOW_KEYS, key);
        Py_XDECREF(key);
        if (rc < 0) return -1;
    }
    if ((FLOW_KIND = PyUnicode_InternFromString("flow")) == NULL ||
        (COUNTER_KIND = PyUnicode_InternFromString("counter")) == NULL)
        return -1;
    if ((ZERO = PyLong_FromLong(0)) == NULL) return -1;
    return 0;
}
