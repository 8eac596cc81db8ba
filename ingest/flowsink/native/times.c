/* ISO-8601 text of epoch milliseconds (times.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include "bytes_text.h"
#include "times.h"

/* The text of the last seconds formatted, 16 slots by the second's low bits: the seconds of one export (its own
 * time, flow starts and ends) are a few, mostly adjacent. The GIL serialises callers. */
#define SECOND_SLOTS 16
static long long second_key[SECOND_SLOTS] = {
    LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN,
    LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN, LLONG_MIN};
static char second_text[SECOND_SLOTS][40];
static int second_len[SECOND_SLOTS];

int iso_parts_text(long long seconds, int millis, char out[48]) {
    int slot = (int)((unsigned long long)seconds % SECOND_SLOTS);
    if (second_key[slot] != seconds) {
        time_t t = (time_t)seconds;
        struct tm tm;
        second_key[slot] = LLONG_MIN;
        if ((long long)t != seconds || gmtime_r(&t, &tm) == NULL ||
            (second_len[slot] = (int)strftime(second_text[slot], 40, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
            return 0;
        second_key[slot] = seconds;
    }
    int n = second_len[slot];
    memcpy(out, second_text[slot], (size_t)n);
    out[n] = '.';
    out[n + 1] = (char)('0' + millis / 100);
    out[n + 2] = (char)('0' + millis / 10 % 10);
    out[n + 3] = (char)('0' + millis % 10);
    out[n + 4] = 'Z';
    return n + 5;
}

int iso_ms_text(long long epoch_ms, char out[48]) {
    long long seconds = epoch_ms / 1000, millis = epoch_ms % 1000;
    if (millis < 0) { millis += 1000; seconds -= 1; }
    return iso_parts_text(seconds, (int)millis, out);
}

PyObject *iso_ms(long long epoch_ms) {
    char text[48];
    int n = iso_ms_text(epoch_ms, text);
    return n ? ascii_text(text, n) : PyUnicode_FromString(ISO_FALLBACK);
}

PyObject *iso_wide(__int128 epoch_ms) {
    if (epoch_ms >= LLONG_MIN && epoch_ms <= LLONG_MAX) return iso_ms((long long)epoch_ms);
    __int128 seconds = epoch_ms / 1000, millis = epoch_ms % 1000;
    if (millis < 0) { millis += 1000; seconds -= 1; }
    char text[48];
    int n = seconds >= LLONG_MIN && seconds <= LLONG_MAX ? iso_parts_text((long long)seconds, (int)millis, text) : 0;
    return n ? ascii_text(text, n) : PyUnicode_FromString(ISO_FALLBACK);
}
