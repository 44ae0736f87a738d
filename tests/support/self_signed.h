/* SPDX-License-Identifier: MIT */
/*
 * A self-signed certificate for tests that run a TLS listener (OpenSSL 3).
 */
#ifndef EDDY_TEST_SELF_SIGNED_H
#define EDDY_TEST_SELF_SIGNED_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Writes a self-signed P-256 certificate with common name cn, valid for an hour, and its
 * key to new files made from the mkstemp() templates cert_file and key_file (which then
 * hold their names; the caller unlinks them). False if any step failed. */
static inline bool self_signed_write(char *cert_file, char *key_file, const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    int cert_fd = mkstemp(cert_file), key_fd = mkstemp(key_file);
    FILE *cert_out = cert_fd >= 0 ? fdopen(cert_fd, "w") : NULL;
    FILE *key_out = key_fd >= 0 ? fdopen(key_fd, "w") : NULL;
    bool ok = key != NULL && cert != NULL && cert_out != NULL && key_out != NULL;
    if (ok) {
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), 0);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
        X509_set_pubkey(cert, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
        X509_set_issuer_name(cert, X509_get_subject_name(cert));
        ok = X509_sign(cert, key, EVP_sha256()) > 0 && PEM_write_X509(cert_out, cert) == 1 &&
             PEM_write_PrivateKey(key_out, key, NULL, NULL, 0, NULL, NULL) == 1;
    }
    if (cert_out != NULL)
        fclose(cert_out);
    if (key_out != NULL)
        fclose(key_out);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

#endif
