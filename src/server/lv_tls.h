/* lv_tls.h - a self-signed certificate on first start (lv_tls.c). The TLS I/O on sockets is
 * lv_tlsio.h. */
#ifndef LV_TLS_H
#define LV_TLS_H

#include <stdbool.h>
#include <stddef.h>

/** Set cert_path and key_path to config_dir/cert.pem and config_dir/key.pem; when either file is
 * missing, generate both (EC P-256, SANs for localhost, the host name and every local address)
 * and set *generated. Blocking crypto and file writes: call before the loop runs. 0 or LV_EIO. */
int lv_tls_ensure_cert(const char *config_dir, char *cert_path, size_t cert_size, char *key_path, size_t key_size,
                       bool *generated);

#endif
