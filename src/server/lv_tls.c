/* lv_tls.c - a self-signed certificate for first start: EC P-256, SANs for localhost, the host
 * name and every local address, so browsers on the LAN can be told to trust it once. Runs before
 * the loop starts (it is the only blocking crypto work, and it happens once per config dir). */
#include "lv_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_log.h"
#include "lv_rand.h"

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return LV_EINVAL;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : LV_EIO;
}

static void build_sans(lv_buf_t *san)
{
    char host[256];
    lv_buf_append_str(san, "DNS:localhost,IP:127.0.0.1,IP:::1");
    if (gethostname(host, sizeof(host)) == 0 && host[0] && strcmp(host, "localhost") != 0) {
        host[sizeof(host) - 1] = '\0';
        lv_buf_printf(san, ",DNS:%s", host);
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        char addr[INET6_ADDRSTRLEN];
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, addr, sizeof(addr));
            if (strncmp(addr, "127.", 4) == 0)
                continue;
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            struct in6_addr *a6 = &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LOOPBACK(a6) || IN6_IS_ADDR_LINKLOCAL(a6))
                continue;
            inet_ntop(AF_INET6, a6, addr, sizeof(addr));
        } else {
            continue;
        }
        lv_buf_printf(san, ",IP:%s", addr);
    }
    freeifaddrs(ifs);
}

static int write_pem(const char *path, int mode, int (*writer)(FILE *, void *), void *obj)
{
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    FILE *f = NULL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd >= 0)
        f = fdopen(fd, "w");
    if (!f) {
        if (fd >= 0)
            close(fd);
        return LV_EIO;
    }
    int ok = writer(f, obj);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LV_EIO;
    }
    return 0;
}

static int write_key(FILE *f, void *k) { return PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL); }
static int write_cert(FILE *f, void *c) { return PEM_write_X509(f, c); }

static int generate(const char *cert_path, const char *key_path)
{
    int rc = LV_EIO;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    lv_buf_t san;
    lv_buf_init(&san, 8192);
    if (!key || !cert)
        goto out;
    unsigned char serial[16];
    lv_rand_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 825L * 86400); /* browsers cap leaf validity near this */
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"livevlm (self-signed)", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    build_sans(&san);
    if (add_ext(cert, NID_subject_alt_name, san.data) || add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        add_ext(cert, NID_key_usage, "critical,digitalSignature") || add_ext(cert, NID_ext_key_usage, "serverAuth"))
        goto out;
    if (!X509_sign(cert, key, EVP_sha256()))
        goto out;
    if ((rc = write_pem(key_path, 0600, write_key, key)) != 0)
        goto out;
    rc = write_pem(cert_path, 0644, write_cert, cert);
    LV_INFO("generated a self-signed certificate %s (SANs %s)", cert_path, san.data);
out:
    lv_buf_free(&san);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int lv_tls_ensure_cert(const char *config_dir, char *cert_path, size_t cert_size, char *key_path, size_t key_size,
                       bool *generated)
{
    struct stat st;
    *generated = false;
    snprintf(cert_path, cert_size, "%s/cert.pem", config_dir);
    snprintf(key_path, key_size, "%s/key.pem", config_dir);
    if (stat(cert_path, &st) == 0 && stat(key_path, &st) == 0)
        return 0;
    *generated = true;
    return generate(cert_path, key_path);
}
