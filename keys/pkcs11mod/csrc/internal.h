/* libedgev2-pkcs11: a PKCS#11 2.40 module whose one token shows the keys of
 * the edgev2 Keys service (org.edgev2.Keys1) and the certificates of the
 * Certificates service, and forwards every private-key operation to keyd over
 * the system bus. Private keys never enter the calling process; polkit, asked
 * by keyd about the calling process, decides. docs/pkcs11.md describes it. */
#ifndef EDGEV2_PKCS11_INTERNAL_H
#define EDGEV2_PKCS11_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
/* After sd-bus: p11-kit's header #defines short names (count, params...). */
#include <p11-kit/pkcs11.h>

#define HIDDEN __attribute__((visibility("hidden")))

/* Limits keyd applies (docs/keys.md): data over 1 MiB is refused. */
#define MAX_DATA (1u << 20)

/* keyd mechanisms a key offers (its Mechanisms property). */
enum {
	KM_HMAC_SHA256 = 1 << 0,
	KM_ECDSA_SHA256 = 1 << 1,
	KM_ECDSA = 1 << 2,
	KM_RSA_PKCS1_SHA256 = 1 << 3,
	KM_RSA_PSS_SHA256 = 1 << 4,
	KM_RSA_PKCS1 = 1 << 5,
	KM_RSA_PSS = 1 << 6,
	KM_AES_256_GCM = 1 << 7,
	KM_RSA_OAEP_SHA256 = 1 << 8,
};

/* One object of the token. Keys come from keyd (a private key and its public
 * key share key_id and path), certificates from certd. */
typedef struct obj {
	CK_OBJECT_HANDLE handle;
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE ktype;    /* CKK_EC, CKK_RSA, CKK_GENERIC_SECRET, CKK_AES; certificates: 0 */
	char *label;          /* the key id (certificates: their key's id, else the cert id) */
	unsigned char *id;    /* CKA_ID: the same bytes as the label */
	size_t id_len;
	char *key_id;         /* keyd key id (keys only) */
	char *path;           /* keyd object path (keys only) */
	char *cert_id;        /* certd id (certificates only) */
	unsigned mechs;       /* KM_* (keys only) */
	unsigned char *spki;  /* public keys and certificates: DER SubjectPublicKeyInfo */
	size_t spki_len;
	unsigned char *value; /* certificates: the leaf DER */
	size_t value_len;
	/* derived from spki */
	unsigned char *ec_params, *ec_point, *modulus, *exponent;
	size_t ec_params_len, ec_point_len, modulus_len, exponent_len;
	size_t field_len;     /* EC: bytes of a coordinate (32, 48) */
	/* certificates: from the DER */
	unsigned char *subject, *issuer, *serial;
	size_t subject_len, issuer_len, serial_len;
	int generation;       /* refresh that last saw it */
	struct obj *next;
} obj_t;

/* ---- log.c ---- */
HIDDEN void p11_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
HIDDEN int p11_debug_enabled(void);

/* ---- der.c ---- */
typedef struct {
	unsigned char tag;
	const unsigned char *val; /* contents */
	size_t len;
	const unsigned char *raw; /* tag..end */
	size_t raw_len;
} der_t;
HIDDEN int der_read(const unsigned char **p, size_t *left, der_t *out);
HIDDEN int der_parse_spki(obj_t *o);
HIDDEN int der_parse_cert(const unsigned char *der, size_t len, const unsigned char **spki, size_t *spki_len,
			  obj_t *o);
HIDDEN int der_ecdsa_to_raw(const unsigned char *der, size_t len, size_t field, unsigned char *out);
HIDDEN size_t der_ecdsa_from_raw(const unsigned char *raw, size_t field, unsigned char *out);
HIDDEN int pem_first_cert(const char *pem, unsigned char **der, size_t *der_len);
HIDDEN int digestinfo_strip(const unsigned char *in, size_t len, const unsigned char **digest, size_t *dlen);

/* ---- keysbus.c: keyd and certd over the system bus ---- */
typedef struct {
	const unsigned char *iv, *aad, *label;
	size_t iv_len, aad_len, label_len;
} kopts_t;

/* The listing callback gets each key keyd shows the caller. */
typedef void (*key_cb)(void *ctx, const char *path, const char *id, const char *type,
		       const unsigned char *spki, size_t spki_len, unsigned mechs);
typedef void (*cert_cb)(void *ctx, const char *id, const char *pem);

HIDDEN CK_RV kb_list_keys(key_cb cb, void *ctx);
HIDDEN CK_RV kb_list_certs(cert_cb cb, void *ctx);
HIDDEN CK_RV kb_key_op(const char *path, const char *key_id, const char *method, const char *mech,
		       const unsigned char *data, size_t len, const kopts_t *opts, unsigned char **out,
		       size_t *out_len);
HIDDEN CK_RV kb_verify(const char *path, const char *key_id, const char *mech, const unsigned char *data,
		       size_t len, const unsigned char *sig, size_t sig_len, int *valid);
HIDDEN void kb_pool_drop(int after_fork);

/* ---- module.c: global state, sessions ---- */
HIDDEN void g_lock(void);
HIDDEN void g_unlock(void);

/* One cryptographic operation of a session (sign, verify, encrypt or
 * decrypt). It owns copies of everything it needs, so a call can run it on
 * the bus without holding g_lock while other threads change the object list. */
typedef struct {
	int active;
	CK_MECHANISM_TYPE mech;
	const char *kmech;        /* keyd's mechanism name */
	char *key_id, *path;
	CK_KEY_TYPE ktype;
	size_t out_len;           /* exact (or, decrypting, largest) result length */
	size_t field_len;         /* ECDSA: coordinate length */
	size_t digest_len;        /* CKM_RSA_PKCS_PSS: the digest length */
	unsigned char *buf;       /* multi-part data */
	size_t buf_len;
	unsigned char *iv, *aad, *label;
	size_t iv_len, aad_len, label_len;
	unsigned char *result;    /* decrypt: a result that did not fit */
	size_t result_len;
} op_t;

typedef struct session {
	CK_SESSION_HANDLE handle;
	CK_FLAGS flags;
	CK_OBJECT_HANDLE *found;
	CK_ULONG nfound, pos;
	int finding;
	op_t sign, verify, enc, dec;
	struct session *next;
} session_t;

HIDDEN CK_RV session_get(CK_SESSION_HANDLE h, session_t **s); /* takes g_lock on success */
HIDDEN void op_clear(op_t *op);
HIDDEN extern CK_FUNCTION_LIST module_functions;

/* ---- crypto.c ---- */
HIDDEN CK_RV op_init(op_t *op, int kind, CK_MECHANISM_PTR mech, const obj_t *key);
enum { OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT };
HIDDEN CK_RV mech_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n);
HIDDEN CK_RV mech_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);

/* ---- objects.c ---- */
HIDDEN CK_RV objects_refresh(void);
HIDDEN obj_t *objects_find(CK_OBJECT_HANDLE h); /* under g_lock */
HIDDEN obj_t *objects_first(void);                  /* under g_lock */
HIDDEN void objects_free_all(void);
HIDDEN CK_RV objects_get_attr(const obj_t *o, CK_ATTRIBUTE *a);
HIDDEN int objects_match(const obj_t *o, const CK_ATTRIBUTE *tmpl, CK_ULONG n);

#endif
