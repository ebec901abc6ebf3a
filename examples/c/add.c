/* add.c: a minimal Fabric guest (ABI version 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FABRIC_IMPORT(n) __attribute__((import_module("fabric"), import_name(n)))
#define FABRIC_EXPORT(n) __attribute__((export_name(n)))

#define ID_SIZE 20
#define STAGED_VALUE 0

/* Host functions: only those this guest uses. */
FABRIC_IMPORT("return_value") void fabric_return_value(const void *ptr, uint32_t len);
FABRIC_IMPORT("return_error") void fabric_return_error(const void *ptr, uint32_t len);
FABRIC_IMPORT("submit")
int32_t fabric_submit(const void *spec, uint32_t spec_len, void *ids_out, uint32_t ids_cap);
FABRIC_IMPORT("get") int32_t fabric_get(const void *ids, uint32_t count, int64_t timeout_ms);
FABRIC_IMPORT("staged_len") int64_t fabric_staged_len(uint32_t index);
FABRIC_IMPORT("staged_kind") int32_t fabric_staged_kind(uint32_t index);
FABRIC_IMPORT("staged_read") int32_t fabric_staged_read(uint32_t index, void *dst, uint32_t cap);

/* ---- A tiny CBOR codec for integers and array heads. ---- */

typedef struct {
    const uint8_t *p, *end;
} cbor_reader;

/* Reads one head. Returns its major type (0-7) and stores its argument,
 * or returns -1 (end of input, indefinite length, reserved value). */
static int cbor_head(cbor_reader *r, uint64_t *arg) {
    if (r->p >= r->end) return -1;
    uint8_t b = *r->p++;
    uint8_t info = b & 0x1f;
    int n;
    if (info < 24) {
        *arg = info;
        return b >> 5;
    }
    switch (info) {
    case 24: n = 1; break;
    case 25: n = 2; break;
    case 26: n = 4; break;
    case 27: n = 8; break;
    default: return -1;
    }
    if (r->end - r->p < n) return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | *r->p++;
    *arg = v;
    return b >> 5;
}

/* Reads an integer (major type 0 or 1) that fits in int64_t. */
static int cbor_read_int(cbor_reader *r, int64_t *out) {
    uint64_t u;
    int major = cbor_head(r, &u);
    if ((major != 0 && major != 1) || u > INT64_MAX) return -1;
    *out = major == 0 ? (int64_t)u : -1 - (int64_t)u;
    return 0;
}

/* Writes a head in its shortest form; returns its length (1 to 9). */
static size_t cbor_put_head(uint8_t *out, uint8_t major, uint64_t u) {
    int n = u < 24 ? 0 : u <= 0xff ? 1 : u <= 0xffff ? 2 : u <= 0xffffffffu ? 4 : 8;
    uint8_t info = n == 0 ? (uint8_t)u : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27;
    out[0] = (uint8_t)(major << 5 | info);
    for (int i = 0; i < n; i++) out[1 + i] = (uint8_t)(u >> (8 * (n - 1 - i)));
    return 1 + (size_t)n;
}

static size_t cbor_put_int(uint8_t *out, int64_t v) {
    if (v >= 0) return cbor_put_head(out, 0, (uint64_t)v);
    return cbor_put_head(out, 1, (uint64_t)(-1 - v));
}

/* ---- Helpers. ---- */

static int32_t fail(const char *msg) {
    fabric_return_error(msg, (uint32_t)strlen(msg));
    return 1;
}

/* Fails the call with the message a failed host call staged at index 0. */
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

/* ---- The task: add(a, b) -> a + b. ---- */

static int32_t task_add(const uint8_t *args, uint32_t len) {
    cbor_reader r = {args, args + len};
    uint64_t count;
    int64_t a, b, sum;
    if (cbor_head(&r, &count) != 4 || count != 2) return fail("add takes 2 arguments");
    if (cbor_read_int(&r, &a) != 0 || cbor_read_int(&r, &b) != 0)
        return fail("add: the arguments must be integers");
    if (__builtin_add_overflow(a, b, &sum)) return fail("add: integer overflow");
    uint8_t out[9];
    fabric_return_value(out, (uint32_t)cbor_put_int(out, sum));
    return 0;
}

/* ---- The driver: submits add(2, 3), waits for it, prints the sum. ---- */

static int32_t job_main(const uint8_t *args, uint32_t len) {
    (void)args; /* [["arg", ...]] or [null]: not used here */
    (void)len;
    /* {"fn": "add", "args": [{"v": h'02'}, {"v": h'03'}]} */
    static const uint8_t spec[] = {
        0xa2,                               /* map of 2 pairs    */
        0x62, 'f', 'n', 0x63, 'a', 'd', 'd', /* "fn": "add"      */
        0x64, 'a', 'r', 'g', 's', 0x82,      /* "args": 2 items  */
        0xa1, 0x61, 'v', 0x41, 0x02,         /* {"v": h'02'}     */
        0xa1, 0x61, 'v', 0x41, 0x03,         /* {"v": h'03'}     */
    };
    uint8_t id[ID_SIZE];
    if (fabric_submit(spec, sizeof spec, id, 1) < 0) return fail_host_call("submit");
    if (fabric_get(id, 1, -1) != 0) return fail_host_call("get");

    int64_t n = fabric_staged_len(0);
    if (n < 0) return fail("get staged nothing");
    if (fabric_staged_kind(0) != STAGED_VALUE) {
        /* Kind 1: a CBOR ErrorValue {"kind", "message", "task"}. */
        return fail("task add failed");
    }
    uint8_t *val = malloc(n > 0 ? (size_t)n : 1);
    if (val == NULL) return fail("out of memory");
    if (fabric_staged_read(0, val, (uint32_t)n) != 0) {
        free(val);
        return fail("staged_read failed");
    }
    cbor_reader r = {val, val + n};
    int64_t sum;
    int bad = cbor_read_int(&r, &sum);
    free(val);
    if (bad) return fail("add returned something other than an integer");

    printf("2 + 3 = %lld\n", (long long)sum);
    fflush(stdout);

    static const uint8_t null_value[] = {0xf6}; /* ignored, but required */
    fabric_return_value(null_value, sizeof null_value);
    return 0;
}

/* ---- Required exports. ---- */

FABRIC_EXPORT("fabric_abi_version") int32_t fabric_abi_version(void) { return 1; }

FABRIC_EXPORT("fabric_alloc") void *fabric_alloc(uint32_t size) {
    return malloc(size > 0 ? size : 1);
}

FABRIC_EXPORT("fabric_free") void fabric_free(void *ptr) { free(ptr); }

FABRIC_EXPORT("fabric_call")
int32_t fabric_call(const char *name, uint32_t name_len, const uint8_t *args, uint32_t args_len) {
    if (name_len == 3 && memcmp(name, "add", 3) == 0) return task_add(args, args_len);
    if (name_len == 4 && memcmp(name, "main", 4) == 0) return job_main(args, args_len);
    return fail("no such function");
}
