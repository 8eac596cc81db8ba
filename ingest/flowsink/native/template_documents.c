/* NetFlow v9 / IPFIX record dicts -> ECS documents (dicts) or their bulk lines, exactly as
 * flowsink.normalize.netflow.flow_document and options_document build them and flowsink.bulk encodes them
 * (tests/test_decode_fast.py, tests/test_decode_bulk_netflow.py compare them byte for byte):
 *   flow_documents(...)  a data set's flow records -> documents;
 *   flow_bulk(...)       the same as bulk lines;
 *   options_bulk(...)    a data set's options records -> bulk lines;
 *   configure_netflow(...)  the Python pieces the rare cases call back into (huge times, relative times, flow.id
 *                        without a Community ID), set once by normalize.netflow.
 * A record these cannot write as the Python path would comes back as None, untouched, for the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "community_id.h"
#include "ecs_documents.h"
#include "json_writer.h"
#include "module.h"
#include "netflow_document.h"
#include "template_documents.h"
#include "times.h"

/* set once by normalize.netflow through configure_netflow(): the Python pieces the rare cases call back into */
static PyObject *CB_RELATIVE_TIMES, *CB_ISO_MS, *CB_FLOW_ID, *DIRECTIONS, *CATEGORY, *CONNECTION, *MAX_LONG_OBJ;
static PyObject *MAX_DURATION_OBJ;
static PyObject *SMALL_NS;   /* 1_000_000: ms -> ns */
static PyObject *ONE, *SMALL_ZERO;
static PyObject *INFO_TYPE;   /* ["info"]: an options document's event.type */

enum {
    A_SRC, A_DST, A_SRC_PORT, A_DST_PORT, A_FWD_BYTES, A_FWD_PACKETS, A_BIFLOW, A_TIMES, A_UPTIME_ONLY,
    A_REV_BYTES, A_REV_PACKETS,
    A_EXPORT_MS, A_UPTIME_MS, A_TIMESTAMP, A_EXPORTER, A_EXPORTER_TAG, A_EXPORTER_FIELDS, A_ENRICHMENT,
    F_PROTOCOL, F_START_UP, F_END_UP, F_FLOW_DIRECTION, F_INGRESS, F_EGRESS,
    F_TC4, F_TC6, F_T4, F_T6, F_C4, F_C6, V_IPV6, P_FLOW_START, P_FLOW_END, V_OPTIONS,
    R_FIRST, R_END_UP = R_FIRST + 1, R_START_DELTA, R_END_DELTA, R_LAST, N_COUNT
};
static const char *NAME_TEXT[N_COUNT] = {
    "src", "dst", "src_port", "dst_port", "fwd_bytes", "fwd_packets", "biflow", "times", "uptime_only",
    "rev_bytes", "rev_packets",
    "export_ms", "uptime_ms", "timestamp", "exporter", "exporter_tag", "exporter_fields", "enrichment",
    "protocol_identifier", "flow_start_sys_up_time", "flow_end_sys_up_time", "flow_direction",
    "ingress_interface", "egress_interface",
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

void set_attrs_clear(SetAttrs *a) {
    for (int i = 0; i < PLAN_ATTRS; i++) Py_CLEAR(a->plan[i]);
    for (int i = 0; i < CONTEXT_ATTRS; i++) Py_CLEAR(a->ctx[i]);
}

int set_attrs_read(SetAttrs *a, PyObject *plan, PyObject *context) {
    memset(a, 0, sizeof(*a));
    a->relative_fields = 1;
    for (int i = 0; i < PLAN_ATTRS; i++)
        if ((a->plan[i] = PyObject_GetAttr(plan, NAMES[A_SRC + i])) == NULL) { set_attrs_clear(a); return -1; }
    for (int i = 0; i < CONTEXT_ATTRS; i++)
        if ((a->ctx[i] = PyObject_GetAttr(context, NAMES[A_EXPORT_MS + i])) == NULL) { set_attrs_clear(a); return -1; }
    if (enrich_read(&a->en, a->ctx[6]) < 0) { set_attrs_clear(a); return -1; }
    return 0;
}

void flow_ecs_clear(FlowEcs *e) {
    Py_CLEAR(e->start_obj); Py_CLEAR(e->end_obj); Py_CLEAR(e->duration_obj);
    Py_CLEAR(e->bytes); Py_CLEAR(e->packets); Py_CLEAR(e->flow_id);
    for (int i = 0; i < 4; i++) Py_CLEAR(e->counters[i]);
    enrich_flow_clear(&e->fa);
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

int flow_ecs(FlowEcs *e, PyObject *record, PyObject *context, const SetAttrs *attrs, PyObject *rate, int renormalize,
             PyObject *time_fields, PyObject *system_init) {
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
    if ((src_port && community_id_port(src_port, &sport) < 0) || (dst_port && community_id_port(dst_port, &dport) < 0)) {
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
    /* the addresses packed, once for the Community ID and the enrichment's cache: -1 not yet, else the length */
    unsigned char pa[16], pb[16];
    Py_ssize_t la = -1, lb = -1;
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
            la = (Py_ssize_t)community_id_address(src_ip, pa);
            lb = (Py_ssize_t)community_id_address(dst_ip, pb);
            if (la && la == lb) {
                community_id_digest(pa, pb, (size_t)la, (int)proto, a, b, 0, e->digest);
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
    if (attrs->en.on && attrs->en.addresses != NULL) {   /* hook.flow_addresses: the address texts, packed */
        if (la < 0) la = src_ip ? (Py_ssize_t)community_id_address(src_ip, pa) : 0;
        if (lb < 0) lb = dst_ip ? (Py_ssize_t)community_id_address(dst_ip, pb) : 0;
        if (enrich_flow(&attrs->en, &e->fa, pa, (size_t)la, pb, (size_t)lb) < 0) return -1;
        e->fa.src_text = src_ip;   /* related.ip: source.ip and destination.ip as written */
        e->fa.dst_text = dst_ip;
    }
    return 0;
counters_failed:
    Py_XDECREF(total[0]); Py_XDECREF(total[1]);
    return -1;
}

static int is_ipv6_text(PyObject *ip) { return PyUnicode_FindChar(ip, ':', 0, PyUnicode_GET_LENGTH(ip), 1) >= 0; }

static PyObject *ecs_time_text(int set, long long ms, PyObject *obj) { return set == 1 ? iso_ms(ms) : iso_any(obj); }

PyObject *flow_ecs_document(const FlowEcs *e, PyObject *record, const SetAttrs *attrs, PyObject *doc_id,
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
    const FlowHit *direction = enrich_direction(&e->fa);
    const Enrich *en = &attrs->en;
    if ((e->bytes && PyDict_SetItem(network, KEYS[K_BYTES], e->bytes) < 0) ||
        (e->packets && PyDict_SetItem(network, KEYS[K_PACKETS], e->packets) < 0) ||
        PyDict_SetItem(network, KEYS[K_DIRECTION], direction ? direction->direction : e->direction) < 0) goto done;
    if (e->have_ids && set_steal(network, K_COMMUNITY, community_id_text(e->digest)) < 0) goto done;
    if (PyDict_SetItem(observer, KEYS[K_IP], exporter) < 0 ||
        (e->ingress && set_steal(observer, K_INGRESS, interface_named(e->ingress, interfaces, en)) < 0) ||
        (e->egress && set_steal(observer, K_EGRESS, interface_named(e->egress, interfaces, en)) < 0) ||
        enrich_dict_observer(observer, en) < 0 || enrich_dict_endpoint(source, &e->fa.src) < 0 ||
        enrich_dict_endpoint(destination, &e->fa.dst) < 0 ||
        PyDict_SetItem(doc, KEYS[K_OBSERVER], observer) < 0 ||
        (PyDict_GET_SIZE(source) && PyDict_SetItem(doc, KEYS[K_SOURCE], source) < 0) ||
        (PyDict_GET_SIZE(destination) && PyDict_SetItem(doc, KEYS[K_DESTINATION], destination) < 0) ||
        PyDict_SetItem(flow, KEYS[K_SAMPLING_RATE], rate) < 0 ||
        set_steal(flow, K_PLAIN_ID, e->have_ids ? community_flow_id(tag, e->digest) : Py_NewRef(e->flow_id)) < 0 ||
        enrich_dict_flow(flow, &e->fa) < 0 || PyDict_SetItem(doc, KEYS[K_FLOW], flow) < 0 ||
        PyDict_SetItem(record, KEYS[K_EXPORTER], exporter_fields) < 0 ||
        PyDict_SetItem(doc, KEYS[K_NETFLOW], record) < 0 || enrich_dict_document(doc, en, &e->fa) < 0) goto done;
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
 * system_init_ms) -> list: a document per record (ids id_prefix + index), None where the Python path must go */
#define FLOW_ARGS "O!OUUOpOOOO"
#define FLOW_ARG_POINTERS \
    &PyList_Type, &records, &context, &prefix, &action, &rate, &renormalize, &plan, &time_fields, &interfaces, \
        &system_init

PyObject *py_flow_documents(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init;
    int renormalize;
    if (!PyArg_ParseTuple(args, FLOW_ARGS, FLOW_ARG_POINTERS)) return NULL;
    if (flow_documents_ready() < 0) return NULL;
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

/* observer.<ingress|egress>: {"interface":{"id":"<index>"[,"name":<its name from options data>]}}, with what the
 * exporter's enrichment configures for the ifIndex (its name in place of the exporter's, then alias and speed) */
static int jb_ecs_interface(JsonBuf *b, PyObject *index, PyObject *names, const Enrich *en) {
    PyObject *name = NULL;
    if (names != Py_None && PyDict_Check(names) && PyDict_GET_SIZE(names)) {
        name = PyDict_GetItemWithError(names, index);
        if (name == NULL && PyErr_Occurred()) return -1;
        if (name == Py_None) name = NULL;
    }
    InterfaceHit hit;
    int configured = enrich_interface_key(en, index, &hit);
    if (configured < 0) return -1;
    TRY(JB_LIT(b, "{\"interface\":{\"id\":\""));
    TRY(jb_pyint(b, index));
    TRY(jb_char(b, '"'));
    TRY(jb_enrich_interface_rest(b, &hit, configured, name));
    return JB_LIT(b, "}}");
}

/* "key": (a literal) with the comma before every member but an object's first */
static int jb_key(JsonBuf *b, int *first, const char *quoted_key, Py_ssize_t n) {
    if (!*first && jb_char(b, ',') < 0) return -1;
    *first = 0;
    return jb_put(b, quoted_key, n);
}
#define JB_KEY(b, first, key) jb_key((b), (first), "\"" key "\":", (Py_ssize_t)sizeof("\"" key "\":") - 1)

/* ,"source":{"ip":..,"port":..,"bytes":..,"packets":..[enrichment]} with the members there are; nothing without
 * any */
static int jb_ecs_endpoint(JsonBuf *b, const char *name, PyObject *ip, PyObject *port, PyObject *const counters[2],
                           const AddressHit *hit) {
    if (!ip && !port && !counters[0] && !counters[1]) return 0;
    int first = 1;
    TRY(jb_char(b, ','));
    TRY(jb_text(b, name, (Py_ssize_t)strlen(name)));
    TRY(JB_LIT(b, ":{"));
    if (ip) { TRY(JB_KEY(b, &first, "ip")); TRY(jb_pystr(b, ip)); }
    if (port) { TRY(JB_KEY(b, &first, "port")); TRY(jb_pyint(b, port)); }
    if (counters[0]) { TRY(JB_KEY(b, &first, "bytes")); TRY(jb_pyint(b, counters[0])); }
    if (counters[1]) { TRY(JB_KEY(b, &first, "packets")); TRY(jb_pyint(b, counters[1])); }
    TRY(jb_enrich_endpoint(b, hit));
    return jb_char(b, '}');
}

int flow_ecs_bulk_head(JsonBuf *b, const FlowEcs *e, const BulkShared *s, Py_ssize_t index, PyObject *rate,
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
        const char *transport = transport_name((unsigned)e->proto);
        if (transport) { TRY(JB_KEY(b, &first, "transport")); TRY(jb_text(b, transport, (Py_ssize_t)strlen(transport))); }
    }
    if (e->bytes) { TRY(JB_KEY(b, &first, "bytes")); TRY(jb_pyint(b, e->bytes)); }
    if (e->packets) { TRY(JB_KEY(b, &first, "packets")); TRY(jb_pyint(b, e->packets)); }
    TRY(JB_KEY(b, &first, "direction"));
    const FlowHit *direction = enrich_direction(&e->fa);
    TRY(direction ? jb_put(b, direction->direction_json, direction->direction_json_len) : jb_pyvalue(b, e->direction, 0));
    if (e->have_ids) { TRY(JB_LIT(b, ",\"community_id\":")); TRY(jb_community(b, e->digest)); }
    TRY(JB_LIT(b, "},"));
    TRY(jb_piece(b, s, SEG_OBSERVER));
    if (e->ingress) { TRY(JB_LIT(b, ",\"ingress\":")); TRY(jb_ecs_interface(b, e->ingress, interfaces, s->en)); }
    if (e->egress) { TRY(JB_LIT(b, ",\"egress\":")); TRY(jb_ecs_interface(b, e->egress, interfaces, s->en)); }
    TRY(jb_enrich_observer(b, s->en));
    TRY(jb_char(b, '}'));
    TRY(jb_ecs_endpoint(b, "source", e->src_ip, e->src_port, e->counters, &e->fa.src));
    TRY(jb_ecs_endpoint(b, "destination", e->dst_ip, e->dst_port, e->counters + 2, &e->fa.dst));
    TRY(JB_LIT(b, ",\"flow\":{\"sampling_rate\":"));
    TRY(jb_pyvalue(b, rate, 0));
    if (e->have_ids) {
        TRY(jb_piece(b, s, SEG_FLOW));
        TRY(jb_flow_id_tail(b, e->digest));
    } else {
        TRY(JB_LIT(b, ",\"id\":"));
        TRY(jb_pyvalue(b, e->flow_id, 0));
    }
    TRY(jb_enrich_flow(b, &e->fa));
    return JB_LIT(b, "},\"netflow\":{");
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
    return bulk_document_end(b, s, &e->fa);
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
PyObject *py_flow_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *action, *rate, *plan, *time_fields, *interfaces, *system_init, *head;
    int renormalize, keep_ids;
    if (!PyArg_ParseTuple(args, FLOW_ARGS "O!p", FLOW_ARG_POINTERS, &PyBytes_Type, &head, &keep_ids)) return NULL;
    if (flow_documents_ready() < 0) return NULL;
    SetAttrs attrs;
    if (set_attrs_read(&attrs, plan, context) < 0) return NULL;
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    int shared = flow_shared_begin(&s, head, keep_ids, &attrs, prefix, action);
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
    TRY(jb_enrich_observer(b, s->en));
    TRY(JB_LIT(b, "},\"netflow\":{"));
    TRY(jb_pydict_items(b, record, 0));
    if (PyDict_GET_SIZE(record)) TRY(jb_char(b, ','));
    return bulk_document_end(b, s, NULL);
}

/* options_bulk(records, context, id_prefix, time_fields, action_head, keep_ids) -> list: per options record its
 * bulk lines (normalize.netflow.options_document, serialised), or None where the Python path must write it (its
 * dateTime elements are already ISO text then, which options_document leaves as they are) */
PyObject *py_options_bulk(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *records, *context, *prefix, *time_fields, *head;
    int keep_ids;
    if (!PyArg_ParseTuple(args, "O!OUO!O!p", &PyList_Type, &records, &context, &prefix, &PyTuple_Type, &time_fields,
                          &PyBytes_Type, &head, &keep_ids))
        return NULL;
    /* timestamp, exporter, exporter_tag, exporter_fields, enrichment */
    PyObject *ctx[5] = {NULL, NULL, NULL, NULL, NULL};
    static const int names[5] = {A_TIMESTAMP, A_EXPORTER, A_EXPORTER_TAG, A_EXPORTER_FIELDS, A_ENRICHMENT};
    PyObject *out = NULL;
    BulkShared s;
    JsonBuf b = {NULL, 0, 0};
    Enrich en;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 5; i++)
        if ((ctx[i] = PyObject_GetAttr(context, NAMES[names[i]])) == NULL) goto done;
    if (enrich_read(&en, ctx[4]) < 0) goto done;
    int shared = bulk_shared_begin(&s, head, keep_ids, ctx[0], prefix, CATEGORY, INFO_TYPE, NAMES[V_OPTIONS],
                                   ctx[1], ctx[2], ctx[3], &en);
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
    for (int i = 0; i < 5; i++) Py_XDECREF(ctx[i]);
    bulk_shared_free(&s);
    jb_free(&b);
    return out;
}

/* configure_netflow(record_times, iso_ms, flow_id, directions, category, connection, max_long, max_duration_ms):
 * normalize.netflow's pieces, called once at its import */
PyObject *py_configure_netflow(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *record_times, *iso, *flow_id, *directions, *category, *connection, *max_long, *max_duration;
    if (!PyArg_ParseTuple(args, "OOOO!O!O!O!O!", &record_times, &iso, &flow_id, &PyDict_Type, &directions,
                          &PyList_Type, &category, &PyList_Type, &connection, &PyLong_Type, &max_long,
                          &PyLong_Type, &max_duration))
        return NULL;
    PyObject **slots[] = {&CB_RELATIVE_TIMES, &CB_ISO_MS, &CB_FLOW_ID, &DIRECTIONS, &CATEGORY, &CONNECTION,
                          &MAX_LONG_OBJ, &MAX_DURATION_OBJ};
    PyObject *values[] = {record_times, iso, flow_id, directions, category, connection, max_long, max_duration};
    for (int i = 0; i < 8; i++) { Py_INCREF(values[i]); Py_XSETREF(*slots[i], values[i]); }
    Py_RETURN_NONE;
}

int flow_documents_ready(void) {
    if (CB_RELATIVE_TIMES != NULL) return 0;
    PyErr_SetString(PyExc_RuntimeError, "configure_netflow() not called");
    return -1;
}

int flow_shared_begin(BulkShared *s, PyObject *head, int keep_ids, const SetAttrs *attrs, PyObject *prefix,
                      PyObject *action) {
    return bulk_shared_begin(s, head, keep_ids, attrs->ctx[2], prefix, CATEGORY, CONNECTION, action, attrs->ctx[3],
                             attrs->ctx[4], attrs->ctx[5], &attrs->en);
}

int template_documents_init(void) {
    for (int i = 0; i < N_COUNT; i++)
        if ((NAMES[i] = PyUnicode_InternFromString(NAME_TEXT[i])) == NULL) return -1;
    if ((SMALL_NS = PyLong_FromLong(1000000)) == NULL || (ONE = PyLong_FromLong(1)) == NULL ||
        (SMALL_ZERO = PyLong_FromLong(0)) == NULL || (INFO_TYPE = Py_BuildValue("[s]", "info")) == NULL)
        return -1;
    return 0;
}
