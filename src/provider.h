/* SPDX-License-Identifier: MIT */
/*
 * An algorithm's functions in the OpenSSL provider that implements it (provider-base(7)),
 * called directly rather than through EVP, whose bookkeeping on every call costs more
 * than the work on a small input: tls13.c's records, the handshake key's SHA-1. The
 * provider is the one EVP's fetch chose (the default, FIPS or another, as configured).
 */
#ifndef EDDY_PROVIDER_H
#define EDDY_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

struct ossl_provider_st;

/* A provider function, as OSSL_DISPATCH holds it: cast to its OSSL_FUNC_*_fn type. */
typedef void (*eddy__provider_fn)(void);

/* Finds the algorithm called name (any of its names, case-insensitive) among the
 * algorithms prov offers for operation (OSSL_OP_CIPHER, OSSL_OP_DIGEST ...), and stores
 * its function numbered ids[i] in fns[i] for each i < n. Returns true if it found the
 * algorithm and all n functions (fns may be partly filled otherwise). Any thread. */
bool eddy__provider_functions(struct ossl_provider_st *prov, int operation, const char *name,
                              const int *ids, eddy__provider_fn *fns, size_t n);

#endif /* EDDY_PROVIDER_H */
