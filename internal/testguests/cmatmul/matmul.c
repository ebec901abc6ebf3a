/* matmul.c: a C guest for `fabric bench`'s compute comparison. It carries
 * the ABI's required exports (with no registered functions) and exports
 * bench_matmul(n): the product of two deterministic n x n float64 matrices,
 * returning the sum of the result as a checksum. */
#include <stdint.h>
#include <stdlib.h>

#define EXPORT(n) __attribute__((export_name(n)))
#define IMPORT(n) __attribute__((import_module("fabric"), import_name(n)))

IMPORT("return_error") void fabric_return_error(const void *ptr, uint32_t len);

EXPORT("fabric_abi_version") int32_t fabric_abi_version(void) { return 1; }
EXPORT("fabric_alloc") void *fabric_alloc(int32_t size) { return malloc(size ? (size_t)size : 1); }
EXPORT("fabric_free") void fabric_free(void *p) { free(p); }
EXPORT("fabric_call") int32_t fabric_call(const char *name, int32_t name_len, const uint8_t *args, int32_t args_len) {
    static const char msg[] = "this module registers no functions";
    fabric_return_error(msg, sizeof msg - 1);
    return 1;
}

EXPORT("bench_matmul") double bench_matmul(int32_t n) {
    double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n), *c = malloc(sizeof(double) * n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (double)(i % 7) * 0.5;
        b[i] = (double)(i % 5) * 0.25;
        c[i] = 0;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double aik = a[i * n + k];
            for (int j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
        }
    double sum = 0;
    for (int i = 0; i < n * n; i++) sum += c[i];
    free(a);
    free(b);
    free(c);
    return sum;
}
