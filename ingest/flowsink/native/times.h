/* Epoch milliseconds as ISO-8601 UTC text with milliseconds ("2024-04-17T18:42:58.304Z"), the text of
 * flowsink.normalize.netflow.iso_ms, for the NetFlow writers (v5's export-relative times, v9/IPFIX's too and
 * their dateTime elements). One cache of the last seconds formatted serves them all.
 */
#ifndef FLOWSINK_NATIVE_TIMES_H
#define FLOWSINK_NATIVE_TIMES_H

#include <Python.h>
#include <string.h>

#include "json_writer.h"

/* what normalize.netflow.iso_ms gives for a second gmtime cannot take */
#define ISO_FALLBACK "1970-01-01T00:00:00.000Z"

/* epoch seconds + milliseconds (0..999) -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (unquoted) into out[48]; returns its
 * length, 0 when gmtime cannot (a year beyond an int) */
int iso_parts_text(long long seconds, int millis, char out[48]);

/* epoch ms -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (unquoted) into out[48]; returns its length, 0 when gmtime cannot
 * (the caller then declines the document). Same text as flowsink.normalize.netflow.iso_ms. */
int iso_ms_text(long long epoch_ms, char out[48]);

/* epoch ms -> that text as a str, ISO_FALLBACK where gmtime cannot (floor division, UTC: iso_ms's rules) */
PyObject *iso_ms(long long epoch_ms);

/* iso_ms for epoch ms beyond 64 bits too (NTP and second-resolution dateTime values): the text Python's iso_ms
 * gives */
PyObject *iso_wide(__int128 epoch_ms);

/* epoch ms as a quoted ISO-8601 string, the fallback text where iso_ms_text cannot (as iso_ms does) */
static inline int jb_iso_ms(JsonBuf *b, long long epoch_ms) {
    char text[48];
    int n = iso_ms_text(epoch_ms, text);
    if (n == 0) return JB_LIT(b, "\"" ISO_FALLBACK "\"");
    if (jb_reserve(b, n + 2) < 0) return -1;
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    b->data[b->len++] = '"';
    return 0;
}

#endif
