/* actors.c: a C guest with an actor class, for the density tests and
 * benchmarks: its driver creates N actors of class Counter (one instance
 * each), calls Counter.add(i) once on each, and prints the sum of what
 * they return.
 *
 *   fabric run cactors.wasm -- 10000 [MS [DIVERS]]
 *
 * Arguments: N (default 100), then how long to sleep afterwards in
 * milliseconds (default 0), holding the actors, then how many of the
 * actors call Counter.dive instead (default 0): a recursion without end,
 * which the host's stack budget must end with only that actor's instance
 * lost. The driver returns the sum as its value.
 *
 * It is also a Serve deployment: class Echo answers a request with its
 * body (the serve benchmarks' C guest). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMPORT(n) __attribute__((import_module("fabric"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

#define ID_SIZE 20
#define STAGED_VALUE 0
#define GET_BATCH 1000

IMPORT("return_value") void fabric_return_value(const void *ptr, uint32_t len);
IMPORT("return_error") void fabric_return_error(const void *ptr, uint32_t len);
IMPORT("submit") int32_t fabric_submit(const void *spec, uint32_t spec_len, void *ids_out, uint32_t ids_cap);
IMPORT("actor_create") int32_t fabric_actor_create(const void *spec, uint32_t spec_len, void *id_out);
IMPORT("get") int32_t fabric_get(const void *ids, uint32_t count, int64_t timeout_ms);
IMPORT("release") int32_t fabric_release(const void *ids, uint32_t count);
IMPORT("staged_len") int64_t fabric_staged_len(uint32_t index);
IMPORT("staged_kind") int32_t fabric_staged_kind(uint32_t index);
IMPORT("staged_read") int32_t fabric_staged_read(uint32_t index, void *dst, uint32_t cap);

/* Writes a CBOR head in its shortest form; returns its length. */
static size_t put_head(uint8_t *out, uint8_t major, uint64_t u) {
    int n = u < 24 ? 0 : u <= 0xff ? 1 : u <= 0xffff ? 2 : u <= 0xffffffffu ? 4 : 8;
    uint8_t info = n == 0 ? (uint8_t)u : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27;
    out[0] = (uint8_t)(major << 5 | info);
    for (int i = 0; i < n; i++) out[1 + i] = (uint8_t)(u >> (8 * (n - 1 - i)));
    return 1 + (size_t)n;
}

/* Reads a CBOR head; returns its major type, or -1. */
static int read_head(const uint8_t **p, const uint8_t *end, uint64_t *arg) {
    if (*p >= end) return -1;
    uint8_t b = *(*p)++, info = b & 0x1f;
    int n = info < 24 ? 0 : info == 24 ? 1 : info == 25 ? 2 : info == 26 ? 4 : info == 27 ? 8 : -1;
    if (n < 0 || end - *p < n) return -1;
    uint64_t v = info < 24 ? info : 0;
    for (int i = 0; i < n; i++) v = v << 8 | *(*p)++;
    *arg = v;
    return b >> 5;
}

static int32_t fail(const char *msg) {
    fabric_return_error(msg, (uint32_t)strlen(msg));
    return 1;
}

static int32_t fail_host_call(const char *what) {
    char msg[512];
    int k = snprintf(msg, sizeof msg, "%s failed", what);
    int64_t n = fabric_staged_len(0);
    if (n > 0 && n < (int64_t)(sizeof msg) - k - 2) {
        msg[k++] = ':';
        msg[k++] = ' ';
        if (fabric_staged_read(0, msg + k, (uint32_t)n) == 0) k += (int)n;
    }
    fabric_return_error(msg, (uint32_t)k);
    return 1;
}

static int32_t return_uint(uint64_t v) {
    uint8_t out[9];
    fabric_return_value(out, (uint32_t)put_head(out, 0, v));
    return 0;
}

/* ---- The actor: Counter holds a total; add(x) adds x and returns it. ---- */

static uint64_t total; /* one instance per actor: this is its state */

static int32_t counter_init(void) {
    total = 0;
    static const uint8_t null_value[] = {0xf6};
    fabric_return_value(null_value, sizeof null_value);
    return 0;
}

static int32_t counter_add(const uint8_t *args, uint32_t len) {
    const uint8_t *p = args, *end = args + len;
    uint64_t n, x;
    if (read_head(&p, end, &n) != 4 || n != 1 || read_head(&p, end, &x) != 0)
        return fail("Counter.add takes one unsigned integer");
    total += x;
    return return_uint(total);
}

/* dive recurses without end on the wasm stack (no local of it has its
 * address taken, so C's own stack in linear memory does not grow): the
 * host's stack budget ends the call, and the instance with it. */
static volatile uint64_t dive_sink;

__attribute__((noinline)) static uint64_t dive(uint64_t depth) {
    dive_sink = depth;
    uint64_t r = dive(depth + 1);
    return r * 3 + depth;
}

static int32_t counter_dive(void) { return return_uint(dive(0)); }

/* ---- The deployment: Echo answers a request with its body. ---- */

/* skip steps over one CBOR item of definite length; returns 0, or -1. */
static int skip(const uint8_t **p, const uint8_t *end, int depth) {
    uint64_t n;
    int major = read_head(p, end, &n);
    if (major < 0 || depth > 16) return -1;
    switch (major) {
    case 2:
    case 3:
        if ((uint64_t)(end - *p) < n) return -1;
        *p += n;
        return 0;
    case 4:
    case 5:
        for (uint64_t i = 0; i < (major == 5 ? 2 * n : n); i++)
            if (skip(p, end, depth + 1) < 0) return -1;
        return 0;
    default:
        return 0; /* integers, simple values */
    }
}

static int32_t echo_init(void) {
    static const uint8_t null_value[] = {0xf6};
    fabric_return_value(null_value, sizeof null_value);
    return 0;
}

/* echo_call reads [ServeRequest] ({1: method, 2: path, ..., 5: body})
 * and answers the ServeResponse {3: body}. */
static int32_t echo_call(const uint8_t *args, uint32_t len) {
    const uint8_t *p = args, *end = args + len, *body = NULL;
    uint64_t n, key, blen = 0;
    if (read_head(&p, end, &n) != 4 || n != 1 || read_head(&p, end, &n) != 5) return fail("Echo.__call__ takes one request");
    for (uint64_t i = 0; i < n; i++) {
        if (read_head(&p, end, &key) != 0) return fail("a request's keys are integers");
        if (key == 5) {
            if (read_head(&p, end, &blen) != 2 || (uint64_t)(end - p) < blen) return fail("a request's body is bytes");
            body = p;
            p += blen;
        } else if (skip(&p, end, 0) < 0) {
            return fail("a malformed request");
        }
    }
    uint8_t *out = malloc(blen + 16);
    if (out == NULL) return fail("out of memory");
    size_t k = put_head(out, 5, 1);
    k += put_head(out + k, 0, 3);
    k += put_head(out + k, 2, blen);
    if (blen > 0) memcpy(out + k, body, blen);
    fabric_return_value(out, (uint32_t)(k + blen));
    free(out);
    return 0;
}

/* ---- The driver. ---- */

/* parse_arg returns main's argument k as a number: main's arguments are
 * [["N", "MS"]] or [null]; def when it is missing or not a number. */
static uint64_t parse_arg(const uint8_t *args, uint32_t len, uint64_t k, uint64_t def) {
    const uint8_t *p = args, *end = args + len;
    uint64_t n, slen;
    if (read_head(&p, end, &n) != 4 || n != 1) return def;
    if (read_head(&p, end, &n) != 4 || n <= k) return def;
    for (uint64_t i = 0;; i++) {
        if (read_head(&p, end, &slen) != 3 || (uint64_t)(end - p) < slen) return def;
        if (i == k) break;
        p += slen;
    }
    if (slen == 0 || slen > 12) return def;
    uint64_t v = 0;
    for (uint64_t i = 0; i < slen; i++) {
        if (p[i] < '0' || p[i] > '9') return def;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    return v;
}

static int32_t job_main(const uint8_t *args, uint32_t len) {
    uint64_t n = parse_arg(args, len, 0, 100), ms = parse_arg(args, len, 1, 0), divers = parse_arg(args, len, 2, 0);
    if (divers > n) divers = n;
    uint8_t *actors = malloc(n * ID_SIZE + 1), *results = malloc(n * ID_SIZE + 1);
    if (actors == NULL || results == NULL) return fail("out of memory");
    /* {"fn": "Counter"} */
    static const uint8_t create[] = {0xa1, 0x62, 'f', 'n', 0x67, 'C', 'o', 'u', 'n', 't', 'e', 'r'};
    for (uint64_t i = 0; i < n; i++)
        if (fabric_actor_create(create, sizeof create, actors + i * ID_SIZE) < 0) return fail_host_call("actor_create");
    /* {"fn": "Counter.dive", "actor": h'<id>'} */
    for (uint64_t i = 0; i < divers; i++) {
        uint8_t spec[64];
        static const uint8_t head[] = {0xa2, 0x62, 'f', 'n', 0x6c, 'C', 'o', 'u', 'n', 't', 'e', 'r', '.', 'd', 'i', 'v', 'e',
                                       0x65, 'a', 'c', 't', 'o', 'r', 0x54};
        memcpy(spec, head, sizeof head);
        memcpy(spec + sizeof head, actors + i * ID_SIZE, ID_SIZE);
        if (fabric_submit(spec, (uint32_t)(sizeof head + ID_SIZE), results + i * ID_SIZE, 1) < 0) return fail_host_call("submit");
    }
    /* {"fn": "Counter.add", "actor": h'<id>', "args": [{"v": h'<i>'}]} */
    for (uint64_t i = divers; i < n; i++) {
        uint8_t spec[96], v[9];
        size_t k = 0, vlen = put_head(v, 0, i);
        static const uint8_t head[] = {0xa3, 0x62, 'f', 'n', 0x6b, 'C', 'o', 'u', 'n', 't', 'e', 'r', '.', 'a', 'd', 'd',
                                       0x65, 'a', 'c', 't', 'o', 'r', 0x54};
        memcpy(spec, head, sizeof head);
        k = sizeof head;
        memcpy(spec + k, actors + i * ID_SIZE, ID_SIZE);
        k += ID_SIZE;
        static const uint8_t argsKey[] = {0x64, 'a', 'r', 'g', 's', 0x81, 0xa1, 0x61, 'v'};
        memcpy(spec + k, argsKey, sizeof argsKey);
        k += sizeof argsKey;
        k += put_head(spec + k, 2, vlen);
        memcpy(spec + k, v, vlen);
        k += vlen;
        if (fabric_submit(spec, (uint32_t)k, results + i * ID_SIZE, 1) < 0) return fail_host_call("submit");
    }
    uint64_t sum = 0, exhausted = 0;
    for (uint64_t i = 0; i < divers; i++) {
        if (fabric_get(results + i * ID_SIZE, 1, -1) != 0) return fail_host_call("get");
        static char ev[64 << 10];
        int64_t el = fabric_staged_len(0);
        if (fabric_staged_kind(0) != STAGED_VALUE && el > 0 && el < (int64_t)sizeof ev && fabric_staged_read(0, ev, sizeof ev) == 0) {
            ev[el] = 0;
            for (int64_t j = 0; j < el; j++)
                if (ev[j] == 0) ev[j] = '.';
            if (strstr(ev, "guest stack exhausted") != NULL) exhausted++;
        }
        fabric_release(results + i * ID_SIZE, 1);
    }
    if (divers > 0) printf("divers: %llu, ended by the stack budget: %llu\n", (unsigned long long)divers, (unsigned long long)exhausted);
    for (uint64_t at = divers; at < n; at += GET_BATCH) {
        uint32_t count = (uint32_t)(n - at < GET_BATCH ? n - at : GET_BATCH);
        if (fabric_get(results + at * ID_SIZE, count, -1) != 0) return fail_host_call("get");
        for (uint32_t i = 0; i < count; i++) {
            uint8_t buf[16];
            int64_t l = fabric_staged_len(i);
            if (fabric_staged_kind(i) != STAGED_VALUE) {
                /* An ErrorValue in CBOR: show its text, unprintable bytes as dots. */
                char msg[300] = "a Counter.add call failed: ";
                size_t k = strlen(msg);
                uint8_t ev[256];
                int64_t el = fabric_staged_len(i);
                if (el > 0 && el <= (int64_t)sizeof ev && fabric_staged_read(i, ev, sizeof ev) == 0)
                    for (int64_t j = 0; j < el && k < sizeof msg - 1; j++) msg[k++] = ev[j] >= 32 && ev[j] < 127 ? (char)ev[j] : '.';
                msg[k] = 0;
                return fail(msg);
            }
            if (l <= 0 || l > (int64_t)sizeof buf || fabric_staged_read(i, buf, sizeof buf) != 0)
                return fail("Counter.add returned something unexpected");
            const uint8_t *p = buf;
            uint64_t x;
            if (read_head(&p, buf + l, &x) != 0) return fail("Counter.add returned a non-integer");
            sum += x;
        }
        fabric_release(results + at * ID_SIZE, count);
    }
    printf("actors: %llu called once, sum %llu\n", (unsigned long long)(n - divers), (unsigned long long)sum);
    fflush(stdout);
    if (ms > 0) usleep((useconds_t)(ms * 1000));
    free(actors);
    free(results);
    return return_uint(sum);
}

EXPORT("fabric_abi_version") int32_t fabric_abi_version(void) { return 1; }
EXPORT("fabric_alloc") void *fabric_alloc(uint32_t size) { return malloc(size > 0 ? size : 1); }
EXPORT("fabric_free") void fabric_free(void *ptr) { free(ptr); }

EXPORT("fabric_call")
int32_t fabric_call(const char *name, uint32_t name_len, const uint8_t *args, uint32_t args_len) {
#define IS(s) (name_len == sizeof(s) - 1 && memcmp(name, s, sizeof(s) - 1) == 0)
    if (IS("main")) return job_main(args, args_len);
    if (IS("Counter.__init__")) return counter_init();
    if (IS("Counter.add")) return counter_add(args, args_len);
    if (IS("Counter.dive")) return counter_dive();
    if (IS("Echo.__init__")) return echo_init();
    if (IS("Echo.__call__")) return echo_call(args, args_len);
    return fail("no such function");
}
