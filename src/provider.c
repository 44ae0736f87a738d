/* SPDX-License-Identifier: MIT */
/*
 * An algorithm's functions in its OpenSSL provider (provider.h).
 */
#include <openssl/core.h>
#include <openssl/provider.h>
#include <string.h>
#include <strings.h>

#include "provider.h"

/* True if name is one of the colon-separated names of list. */
static bool names_include(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p != NULL; p = strchr(p, ':'), p = p != NULL ? p + 1 : NULL)
        if (strncasecmp(p, name, len) == 0 && (p[len] == ':' || p[len] == 0))
            return true;
    return false;
}

bool eddy__provider_functions(OSSL_PROVIDER *prov, int operation, const char *name, const int *ids,
                              eddy__provider_fn *fns, size_t n)
{
    int no_cache;
    const OSSL_ALGORITHM *algs = OSSL_PROVIDER_query_operation(prov, operation, &no_cache);
    const OSSL_DISPATCH *table = NULL;
    for (const OSSL_ALGORITHM *a = algs; a != NULL && a->algorithm_names != NULL; a++)
        if (names_include(a->algorithm_names, name)) {
            table = a->implementation;
            break;
        }
    size_t found = 0;
    for (size_t i = 0; table != NULL && i < n; i++) {
        fns[i] = NULL;
        for (const OSSL_DISPATCH *d = table; d->function_id != 0; d++)
            if (d->function_id == ids[i]) {
                fns[i] = d->function;
                found++;
                break;
            }
    }
    /* The pointers stay valid: they are the provider's code, loaded while the fetched
     * algorithm that led here is held. */
    if (algs != NULL)
        OSSL_PROVIDER_unquery_operation(prov, operation, algs);
    return table != NULL && found == n;
}
