/* What every writer of ECS documents shares, NetFlow's and sFlow's alike: the network.transport names, and dict
 * documents kept out of the cyclic garbage collector.
 */
#ifndef FLOWSINK_NATIVE_ECS_DOCUMENTS_H
#define FLOWSINK_NATIVE_ECS_DOCUMENTS_H

#include <Python.h>

/* IANA protocol number -> ECS network.transport, NULL when unnamed: normalize.common.TRANSPORT_NAMES */
static inline const char *transport_name(unsigned proto) {
    switch (proto) {
    case 1: return "icmp"; case 2: return "igmp"; case 4: return "ipv4"; case 6: return "tcp"; case 17: return "udp";
    case 41: return "ipv6"; case 47: return "gre"; case 50: return "esp"; case 51: return "ah";
    case 58: return "ipv6-icmp"; case 88: return "eigrp"; case 89: return "ospf"; case 103: return "pim";
    case 112: return "vrrp"; case 115: return "l2tp"; case 132: return "sctp";
    default: return NULL;
    }
}

/* Documents are trees of dicts, never cycles, so the cyclic garbage collector has nothing to find in them;
 * untracked, they cost it nothing. Measured: with a bulk batch of documents alive, collections traversing
 * tracked documents took half of the decode time. A dict stays untracked until a container is put in it. */
static inline void untrack(PyObject *object) {
    if (object != NULL && PyObject_GC_IsTracked(object)) PyObject_GC_UnTrack(object);
}

#endif
