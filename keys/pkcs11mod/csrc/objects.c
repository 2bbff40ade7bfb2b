/* The token's objects: for each key keyd shows the caller, a private and a
 * public key object (asymmetric) or a secret key object (symmetric), and for
 * each certificate certd shows, a certificate object. A certificate whose
 * public key is a listed key's gets that key's label and CKA_ID, so one
 * pkcs11: URI names both halves of a TLS identity. Handles stay the same
 * across refreshes for as long as the thing they name is listed. All of it
 * is under g_lock except the bus calls. */
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

static obj_t *objects;                 /* the current list */
static CK_OBJECT_HANDLE next_handle = 1;
static int generation;

static void obj_free(obj_t *o)
{
	if (!o)
		return;
	free(o->label);
	free(o->id);
	free(o->key_id);
	free(o->path);
	free(o->cert_id);
	free(o->spki);
	free(o->value);
	free(o->ec_params);
	free(o->ec_point);
	free(o->modulus);
	free(o->exponent);
	free(o->subject);
	free(o->issuer);
	free(o->serial);
	free(o);
}

static void list_free(obj_t *l)
{
	while (l) {
		obj_t *n = l->next;
		obj_free(l);
		l = n;
	}
}

void objects_free_all(void)
{
	list_free(objects);
	objects = NULL;
	next_handle = 1;
	generation = 0;
}

obj_t *objects_first(void)
{
	return objects;
}

obj_t *objects_find(CK_OBJECT_HANDLE h)
{
	for (obj_t *o = objects; o; o = o->next)
		if (o->handle == h)
			return o;
	return NULL;
}

typedef struct {
	obj_t *head;
	int failed;
} build_t;

static void push(build_t *b, obj_t *o)
{
	o->next = b->head;
	b->head = o;
}

static obj_t *new_obj(build_t *b, CK_OBJECT_CLASS cls, const char *label)
{
	obj_t *o = calloc(1, sizeof *o);
	if (!o || !(o->label = strdup(label)) || !(o->id = (unsigned char *)strdup(label))) {
		obj_free(o);
		b->failed = 1;
		return NULL;
	}
	o->cls = cls;
	o->id_len = strlen(label);
	return o;
}

static void add_key(void *ctx, const char *path, const char *id, const char *type, const unsigned char *spki,
		    size_t spki_len, unsigned mechs)
{
	build_t *b = ctx;
	int asym = strcmp(type, "symmetric") != 0;

	for (int pub = 0; pub <= asym; pub++) {
		obj_t *o = new_obj(b, !asym ? CKO_SECRET_KEY : pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY, id);
		if (!o)
			return;
		o->mechs = mechs;
		if (!(o->key_id = strdup(id)) || !(o->path = strdup(path))) {
			obj_free(o);
			b->failed = 1;
			return;
		}
		if (asym) {
			o->spki = malloc(spki_len ? spki_len : 1);
			if (!o->spki) {
				obj_free(o);
				b->failed = 1;
				return;
			}
			memcpy(o->spki, spki, spki_len);
			o->spki_len = spki_len;
			if (der_parse_spki(o) != 0) {
				p11_log(LOG_WARNING, "key %s: type %s with a public key this module cannot read; not shown",
					id, type);
				obj_free(o);
				return;
			}
		} else {
			o->ktype = (mechs & KM_AES_256_GCM) ? CKK_AES : CKK_GENERIC_SECRET;
		}
		push(b, o);
	}
}

static void add_cert(void *ctx, const char *id, const char *pem)
{
	build_t *b = ctx;
	unsigned char *der = NULL;
	size_t der_len = 0;
	const unsigned char *spki;
	size_t spki_len;
	const char *label = id;
	obj_t *o, *k;

	if (pem_first_cert(pem, &der, &der_len) != 0) {
		p11_log(LOG_WARNING, "certificate %s: not PEM; not shown", id);
		return;
	}
	o = calloc(1, sizeof *o);
	if (!o) {
		free(der);
		b->failed = 1;
		return;
	}
	o->value = der;
	o->value_len = der_len;
	if (der_parse_cert(der, der_len, &spki, &spki_len, o) != 0) {
		p11_log(LOG_WARNING, "certificate %s: DER this module cannot read; not shown", id);
		obj_free(o);
		return;
	}
	/* Pair with the key that holds its private half. */
	for (k = b->head; k; k = k->next)
		if (k->cls == CKO_PUBLIC_KEY && k->spki_len == spki_len && memcmp(k->spki, spki, spki_len) == 0) {
			label = k->key_id;
			break;
		}
	o->cls = CKO_CERTIFICATE;
	if (!(o->label = strdup(label)) || !(o->id = (unsigned char *)strdup(label)) || !(o->cert_id = strdup(id))) {
		obj_free(o);
		b->failed = 1;
		return;
	}
	o->id_len = strlen(label);
	push(b, o);
}

static int same_thing(const obj_t *a, const obj_t *b)
{
	if (a->cls != b->cls)
		return 0;
	if (a->cls == CKO_CERTIFICATE)
		return strcmp(a->cert_id, b->cert_id) == 0 && a->value_len == b->value_len &&
		       memcmp(a->value, b->value, a->value_len) == 0;
	return strcmp(a->key_id, b->key_id) == 0 && a->spki_len == b->spki_len &&
	       (a->spki_len == 0 || memcmp(a->spki, b->spki, a->spki_len) == 0) && a->ktype == b->ktype;
}

CK_RV objects_refresh(void)
{
	build_t b = {0};
	CK_RV rv = kb_list_keys(add_key, &b);

	if (rv == CKR_OK && !b.failed)
		rv = kb_list_certs(add_cert, &b);
	if (rv == CKR_OK && b.failed)
		rv = CKR_HOST_MEMORY;
	if (rv != CKR_OK) {
		list_free(b.head);
		return rv;
	}
	g_lock();
	generation++;
	/* Keep the handle of what is still there; new things get new ones;
	 * handles of things gone are never reused. */
	for (obj_t *n = b.head; n; n = n->next) {
		n->generation = generation;
		for (obj_t *o = objects; o; o = o->next)
			if (same_thing(o, n)) {
				n->handle = o->handle;
				break;
			}
		if (!n->handle)
			n->handle = next_handle++;
	}
	list_free(objects);
	objects = b.head;
	g_unlock();
	return CKR_OK;
}

/* ---- attributes ---- */

enum { A_OK, A_SENSITIVE, A_INVALID };

typedef union {
	CK_BBOOL b;
	CK_ULONG u;
} scratch_t;

static int bval(scratch_t *s, const void **p, size_t *n, int v)
{
	s->b = v ? CK_TRUE : CK_FALSE;
	*p = &s->b;
	*n = sizeof s->b;
	return A_OK;
}

static int uval(scratch_t *s, const void **p, size_t *n, CK_ULONG v)
{
	s->u = v;
	*p = &s->u;
	*n = sizeof s->u;
	return A_OK;
}

static int bytes(const void **p, size_t *n, const void *v, size_t len)
{
	if (!v)
		return A_INVALID;
	*p = v;
	*n = len;
	return A_OK;
}

static int attr_value(const obj_t *o, CK_ATTRIBUTE_TYPE t, scratch_t *s, const void **p, size_t *n)
{
	int key = o->cls != CKO_CERTIFICATE, priv = o->cls == CKO_PRIVATE_KEY, pub = o->cls == CKO_PUBLIC_KEY,
	    sec = o->cls == CKO_SECRET_KEY;
	unsigned m = o->mechs;
	int can_sign = m & (KM_HMAC_SHA256 | KM_ECDSA | KM_ECDSA_SHA256 | KM_RSA_PKCS1 | KM_RSA_PKCS1_SHA256 |
			    KM_RSA_PSS | KM_RSA_PSS_SHA256);
	int can_crypt = m & (KM_AES_256_GCM | KM_RSA_OAEP_SHA256);

	switch (t) {
	case CKA_CLASS:
		return uval(s, p, n, o->cls);
	case CKA_TOKEN:
		return bval(s, p, n, 1);
	case CKA_PRIVATE:
	case CKA_MODIFIABLE:
	case CKA_COPYABLE:
	case CKA_DESTROYABLE:
		return bval(s, p, n, 0);
	case CKA_LABEL:
		return bytes(p, n, o->label, strlen(o->label));
	case CKA_ID:
		return bytes(p, n, o->id, o->id_len);
	}
	if (o->cls == CKO_CERTIFICATE) {
		switch (t) {
		case CKA_CERTIFICATE_TYPE:
			return uval(s, p, n, CKC_X_509);
		case CKA_CERTIFICATE_CATEGORY:
			return uval(s, p, n, 0);
		case CKA_TRUSTED:
			return bval(s, p, n, 0);
		case CKA_VALUE:
			return bytes(p, n, o->value, o->value_len);
		case CKA_SUBJECT:
			return bytes(p, n, o->subject, o->subject_len);
		case CKA_ISSUER:
			return bytes(p, n, o->issuer, o->issuer_len);
		case CKA_SERIAL_NUMBER:
			return bytes(p, n, o->serial, o->serial_len);
		}
		return A_INVALID;
	}
	if (!key)
		return A_INVALID;
	switch (t) {
	case CKA_KEY_TYPE:
		return uval(s, p, n, o->ktype);
	case CKA_LOCAL:
	case CKA_DERIVE:
	case CKA_WRAP:
	case CKA_UNWRAP:
	case CKA_SIGN_RECOVER:
	case CKA_VERIFY_RECOVER:
		return bval(s, p, n, 0);
	case CKA_SIGN:
		return bval(s, p, n, (priv || sec) && can_sign);
	case CKA_VERIFY:
		return bval(s, p, n, (pub || sec) && can_sign);
	case CKA_DECRYPT:
		return bval(s, p, n, (priv || sec) && can_crypt);
	case CKA_ENCRYPT:
		return bval(s, p, n, (pub || sec) && can_crypt);
	case CKA_START_DATE:
	case CKA_END_DATE:
		return bytes(p, n, "", 0);
	}
	if (priv || sec) {
		switch (t) {
		case CKA_SENSITIVE:
		case CKA_ALWAYS_SENSITIVE:
		case CKA_NEVER_EXTRACTABLE:
			return bval(s, p, n, 1);
		case CKA_EXTRACTABLE:
		case CKA_ALWAYS_AUTHENTICATE:
		case CKA_WRAP_WITH_TRUSTED:
			return bval(s, p, n, 0);
		case CKA_VALUE:
		case CKA_PRIVATE_EXPONENT:
		case CKA_PRIME_1:
		case CKA_PRIME_2:
		case CKA_EXPONENT_1:
		case CKA_EXPONENT_2:
		case CKA_COEFFICIENT:
			return A_SENSITIVE;
		}
	}
	if (sec) {
		if (t == CKA_VALUE_LEN && o->ktype == CKK_AES)
			return uval(s, p, n, 32);
		return A_INVALID;
	}
	/* Public parts, on both halves of a pair (libp11 reads them from the
	 * private key object too). */
	switch (t) {
	case CKA_SUBJECT:
		return bytes(p, n, "", 0);
	case CKA_PUBLIC_KEY_INFO:
		return bytes(p, n, o->spki, o->spki_len);
	case CKA_EC_PARAMS:
		return o->ktype == CKK_EC ? bytes(p, n, o->ec_params, o->ec_params_len) : A_INVALID;
	case CKA_EC_POINT:
		return o->ktype == CKK_EC ? bytes(p, n, o->ec_point, o->ec_point_len) : A_INVALID;
	case CKA_MODULUS:
		return o->ktype == CKK_RSA ? bytes(p, n, o->modulus, o->modulus_len) : A_INVALID;
	case CKA_PUBLIC_EXPONENT:
		return o->ktype == CKK_RSA ? bytes(p, n, o->exponent, o->exponent_len) : A_INVALID;
	case CKA_MODULUS_BITS: {
		CK_ULONG bits = 0;
		if (o->ktype != CKK_RSA || !o->modulus_len)
			return A_INVALID;
		bits = (CK_ULONG)(o->modulus_len - 1) * 8;
		for (unsigned char top = o->modulus[0]; top; top >>= 1)
			bits++;
		return uval(s, p, n, bits);
	}
	case CKA_TRUSTED:
		return pub ? bval(s, p, n, 0) : A_INVALID;
	}
	return A_INVALID;
}

CK_RV objects_get_attr(const obj_t *o, CK_ATTRIBUTE *a)
{
	scratch_t s;
	const void *p = NULL;
	size_t n = 0;

	switch (attr_value(o, a->type, &s, &p, &n)) {
	case A_SENSITIVE:
		a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_ATTRIBUTE_SENSITIVE;
	case A_INVALID:
		a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
	if (!a->pValue) {
		a->ulValueLen = n;
		return CKR_OK;
	}
	if (a->ulValueLen < n) {
		a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (n)
		memcpy(a->pValue, p, n);
	a->ulValueLen = n;
	return CKR_OK;
}

int objects_match(const obj_t *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
	for (CK_ULONG i = 0; i < count; i++) {
		scratch_t s;
		const void *p = NULL;
		size_t n = 0;
		if (attr_value(o, tmpl[i].type, &s, &p, &n) != A_OK || n != tmpl[i].ulValueLen ||
		    (n && memcmp(p, tmpl[i].pValue, n) != 0))
			return 0;
	}
	return 1;
}
