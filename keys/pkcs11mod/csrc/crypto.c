/* C_Sign, C_Verify, C_Encrypt, C_Decrypt: each PKCS#11 mechanism maps to
 * one keyd mechanism (docs/pkcs11.md has the table); what keyd cannot do is
 * CKR_MECHANISM_INVALID. Arguments are checked before anything goes on the
 * bus; output sizes follow the two-call convention (NULL buffer: the size;
 * short buffer: CKR_BUFFER_TOO_SMALL and the size, the operation stays). */
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

#define OPS(a, b) ((1 << (a)) | (1 << (b)))

static const struct mdef {
	CK_MECHANISM_TYPE mech;
	CK_KEY_TYPE ktype;
	unsigned need; /* KM_* the key must offer */
	const char *kmech;
	int kinds;
	CK_ULONG min_bits, max_bits;
	CK_FLAGS flags;
} mdefs[] = {
	{CKM_ECDSA, CKK_EC, KM_ECDSA, "ecdsa", OPS(OP_SIGN, OP_VERIFY), 256, 384,
	 CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
	{CKM_ECDSA_SHA256, CKK_EC, KM_ECDSA_SHA256, "ecdsa-sha256", OPS(OP_SIGN, OP_VERIFY), 256, 384,
	 CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS},
	{CKM_RSA_PKCS, CKK_RSA, KM_RSA_PKCS1, "rsa-pkcs1", OPS(OP_SIGN, OP_VERIFY), 2048, 4096, CKF_SIGN | CKF_VERIFY},
	{CKM_SHA256_RSA_PKCS, CKK_RSA, KM_RSA_PKCS1_SHA256, "rsa-pkcs1-sha256", OPS(OP_SIGN, OP_VERIFY), 2048, 4096,
	 CKF_SIGN | CKF_VERIFY},
	{CKM_RSA_PKCS_PSS, CKK_RSA, KM_RSA_PSS, "rsa-pss", OPS(OP_SIGN, OP_VERIFY), 2048, 4096, CKF_SIGN | CKF_VERIFY},
	{CKM_SHA256_RSA_PKCS_PSS, CKK_RSA, KM_RSA_PSS_SHA256, "rsa-pss-sha256", OPS(OP_SIGN, OP_VERIFY), 2048, 4096,
	 CKF_SIGN | CKF_VERIFY},
	{CKM_RSA_PKCS_OAEP, CKK_RSA, KM_RSA_OAEP_SHA256, "rsa-oaep-sha256", OPS(OP_ENCRYPT, OP_DECRYPT), 2048, 4096,
	 CKF_ENCRYPT | CKF_DECRYPT},
	{CKM_SHA256_HMAC, CKK_GENERIC_SECRET, KM_HMAC_SHA256, "hmac-sha256", OPS(OP_SIGN, OP_VERIFY), 32, 128,
	 CKF_SIGN | CKF_VERIFY},
	{CKM_AES_GCM, CKK_AES, KM_AES_256_GCM, "aes-256-gcm", OPS(OP_ENCRYPT, OP_DECRYPT), 32, 32,
	 CKF_ENCRYPT | CKF_DECRYPT},
};
#define NMECH (sizeof mdefs / sizeof mdefs[0])

CK_RV mech_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n)
{
	if (!list) {
		*n = NMECH;
		return CKR_OK;
	}
	if (*n < NMECH) {
		*n = NMECH;
		return CKR_BUFFER_TOO_SMALL;
	}
	for (size_t i = 0; i < NMECH; i++)
		list[i] = mdefs[i].mech;
	*n = NMECH;
	return CKR_OK;
}

CK_RV mech_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	for (size_t i = 0; i < NMECH; i++)
		if (mdefs[i].mech == type) {
			info->ulMinKeySize = mdefs[i].min_bits;
			info->ulMaxKeySize = mdefs[i].max_bits;
			info->flags = mdefs[i].flags;
			return CKR_OK;
		}
	return CKR_MECHANISM_INVALID;
}

static unsigned char *dup_or_null(const void *p, size_t n, int *fail)
{
	unsigned char *d;
	if (!p)
		return NULL;
	d = malloc(n ? n : 1);
	if (!d) {
		*fail = 1;
		return NULL;
	}
	memcpy(d, p, n);
	return d;
}

static size_t hash_len(CK_MECHANISM_TYPE h, CK_RSA_PKCS_MGF_TYPE *mgf)
{
	switch (h) {
	case CKM_SHA256:
		*mgf = CKG_MGF1_SHA256;
		return 32;
	case CKM_SHA384:
		*mgf = CKG_MGF1_SHA384;
		return 48;
	case CKM_SHA512:
		*mgf = CKG_MGF1_SHA512;
		return 64;
	}
	return 0;
}

CK_RV op_init(op_t *op, int kind, CK_MECHANISM_PTR m, const obj_t *k)
{
	const struct mdef *d = NULL;
	int fail = 0;

	for (size_t i = 0; i < NMECH; i++)
		if (mdefs[i].mech == m->mechanism)
			d = &mdefs[i];
	if (!d || !(d->kinds & (1 << kind))) {
		p11_log(LOG_DEBUG, "mechanism 0x%lx: not something keyd does", (unsigned long)m->mechanism);
		return CKR_MECHANISM_INVALID;
	}
	if (k->cls == CKO_CERTIFICATE || ((kind == OP_SIGN || kind == OP_DECRYPT) && k->cls == CKO_PUBLIC_KEY))
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	if (k->ktype != d->ktype)
		return CKR_KEY_TYPE_INCONSISTENT;
	if (!(k->mechs & d->need)) {
		p11_log(LOG_DEBUG, "key %s does not offer %s", k->key_id, d->kmech);
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	}
	memset(op, 0, sizeof *op);
	op->mech = d->mech;
	op->kmech = d->kmech;
	op->ktype = k->ktype;
	op->field_len = k->field_len;
	switch (d->mech) {
	case CKM_RSA_PKCS_PSS:
	case CKM_SHA256_RSA_PKCS_PSS: {
		const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
		CK_RSA_PKCS_MGF_TYPE mgf = 0;
		size_t hl;
		if (!p || m->ulParameterLen != sizeof *p)
			return CKR_MECHANISM_PARAM_INVALID;
		hl = hash_len(p->hashAlg, &mgf);
		/* keyd's PSS: MGF1 with the same hash, salt as long as the hash. */
		if (!hl || p->mgf != mgf || p->sLen != hl ||
		    (d->mech == CKM_SHA256_RSA_PKCS_PSS && p->hashAlg != CKM_SHA256))
			return CKR_MECHANISM_PARAM_INVALID;
		op->digest_len = hl;
		break;
	}
	case CKM_RSA_PKCS_OAEP: {
		const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;
		if (!p || m->ulParameterLen != sizeof *p || p->hashAlg != CKM_SHA256 || p->mgf != CKG_MGF1_SHA256 ||
		    (p->source != 0 && p->source != CKZ_DATA_SPECIFIED) || (!p->pSourceData && p->ulSourceDataLen) ||
		    p->ulSourceDataLen > MAX_DATA)
			return CKR_MECHANISM_PARAM_INVALID;
		if (p->pSourceData && p->ulSourceDataLen) {
			op->label = dup_or_null(p->pSourceData, p->ulSourceDataLen, &fail);
			op->label_len = p->ulSourceDataLen;
		}
		break;
	}
	case CKM_AES_GCM: {
		const CK_GCM_PARAMS *p = m->pParameter;
		if (!p || m->ulParameterLen != sizeof *p || !p->pIv || p->ulIvLen != 12 || p->ulTagBits != 128 ||
		    (!p->pAAD && p->ulAADLen) || p->ulAADLen > MAX_DATA)
			return CKR_MECHANISM_PARAM_INVALID;
		op->iv = dup_or_null(p->pIv, 12, &fail);
		op->iv_len = 12;
		/* keyd takes "no aad" and "empty aad" alike. */
		op->aad = dup_or_null(p->pAAD ? p->pAAD : (CK_BYTE_PTR) "", p->ulAADLen, &fail);
		op->aad_len = p->ulAADLen;
		break;
	}
	default:
		if (m->ulParameterLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
	}
	switch (d->mech) {
	case CKM_ECDSA:
	case CKM_ECDSA_SHA256:
		op->out_len = 2 * k->field_len;
		break;
	case CKM_SHA256_HMAC:
		op->out_len = 32;
		break;
	case CKM_AES_GCM:
		op->out_len = 0; /* depends on the data */
		break;
	default:
		op->out_len = k->modulus_len;
	}
	op->key_id = strdup(k->key_id);
	op->path = strdup(k->path);
	if (fail || !op->key_id || !op->path) {
		op_clear(op);
		return CKR_HOST_MEMORY;
	}
	op->active = 1;
	return CKR_OK;
}

static op_t *op_of(session_t *s, int kind)
{
	switch (kind) {
	case OP_SIGN:
		return &s->sign;
	case OP_VERIFY:
		return &s->verify;
	case OP_ENCRYPT:
		return &s->enc;
	default:
		return &s->dec;
	}
}

/* Looks up session h and its operation of kind, which must be active; on
 * CKR_OK g_lock is held. */
static CK_RV active_op(CK_SESSION_HANDLE h, int kind, op_t **op)
{
	session_t *s;
	CK_RV rv = session_get(h, &s);
	if (rv != CKR_OK)
		return rv;
	*op = op_of(s, kind);
	if (!(*op)->active) {
		g_unlock();
		return CKR_OPERATION_NOT_INITIALIZED;
	}
	return CKR_OK;
}

/* Ends op with error rv (PKCS#11: a failed C_Sign, C_Encrypt... ends the
 * operation) and releases g_lock. */
static CK_RV op_fail(op_t *op, CK_RV rv)
{
	op_clear(op);
	g_unlock();
	return rv;
}

/* PKCS#11's size query (5.2): when out is NULL or *out_len below need, it
 * sets *out_len to need and *rv to what the call returns (CKR_OK for a
 * NULL out, else CKR_BUFFER_TOO_SMALL), and says so; the operation goes on. */
static int size_only(CK_BYTE_PTR out, CK_ULONG_PTR out_len, CK_ULONG need, CK_RV *rv)
{
	if (out && *out_len >= need)
		return 0;
	*rv = out ? CKR_BUFFER_TOO_SMALL : CKR_OK;
	*out_len = need;
	return 1;
}

static CK_RV any_init(int kind, CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	session_t *s;
	obj_t *k;
	op_t *op;
	CK_RV rv;

	if (!m || (!m->pParameter && m->ulParameterLen))
		return CKR_ARGUMENTS_BAD;
	if ((rv = session_get(h, &s)) != CKR_OK)
		return rv;
	op = op_of(s, kind);
	if (op->active)
		rv = CKR_OPERATION_ACTIVE;
	else if (!(k = objects_find(key)) || k->cls == CKO_CERTIFICATE)
		rv = CKR_KEY_HANDLE_INVALID;
	else
		rv = op_init(op, kind, m, k);
	g_unlock();
	return rv;
}

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return any_init(OP_SIGN, h, m, key);
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return any_init(OP_VERIFY, h, m, key);
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return any_init(OP_ENCRYPT, h, m, key);
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	return any_init(OP_DECRYPT, h, m, key);
}

/* The keyd input for a signature mechanism's data. */
static CK_RV sign_input(const op_t *op, const unsigned char *data, size_t len, const unsigned char **in,
			size_t *in_len)
{
	*in = data;
	*in_len = len;
	if (len > MAX_DATA)
		return CKR_DATA_LEN_RANGE;
	switch (op->mech) {
	case CKM_ECDSA:
		if (len < 20 || len > 64)
			return CKR_DATA_LEN_RANGE;
		break;
	case CKM_RSA_PKCS:
		/* keyd signs a digest: take it out of the DigestInfo. */
		if (digestinfo_strip(data, len, in, in_len) != 0) {
			p11_log(LOG_WARNING, "CKM_RSA_PKCS with key %s: the data is not a SHA-256/384/512 DigestInfo; "
					     "keyd signs only those", op->key_id);
			return CKR_DATA_INVALID;
		}
		break;
	case CKM_RSA_PKCS_PSS:
		if (len != op->digest_len)
			return CKR_DATA_LEN_RANGE;
		break;
	}
	return CKR_OK;
}

static CK_RV do_sign(const op_t *op, const unsigned char *data, size_t len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	const unsigned char *in;
	unsigned char *out = NULL;
	size_t in_len, out_len = 0;
	CK_RV rv = sign_input(op, data, len, &in, &in_len);

	if (rv != CKR_OK)
		return rv;
	rv = kb_key_op(op->path, op->key_id, "Sign", op->kmech, in, in_len, NULL, &out, &out_len);
	if (rv != CKR_OK)
		return rv;
	if (op->mech == CKM_ECDSA || op->mech == CKM_ECDSA_SHA256) {
		if (der_ecdsa_to_raw(out, out_len, op->field_len, sig) != 0)
			rv = CKR_FUNCTION_FAILED;
		else
			*sig_len = 2 * op->field_len;
	} else if (out_len != op->out_len) {
		rv = CKR_FUNCTION_FAILED;
	} else {
		memcpy(sig, out, out_len);
		*sig_len = out_len;
	}
	free(out);
	if (rv == CKR_FUNCTION_FAILED)
		p11_log(LOG_ERR, "Sign with key %s: keyd's signature has an unexpected form", op->key_id);
	return rv;
}

static CK_RV do_verify(const op_t *op, const unsigned char *data, size_t len, const unsigned char *sig,
		       size_t sig_len)
{
	const unsigned char *in;
	size_t in_len;
	unsigned char der[2 + 2 * (3 + 64)];
	int valid = 0;
	CK_RV rv = sign_input(op, data, len, &in, &in_len);

	if (rv != CKR_OK)
		return rv;
	if (sig_len != op->out_len)
		return CKR_SIGNATURE_LEN_RANGE;
	if (op->mech == CKM_ECDSA || op->mech == CKM_ECDSA_SHA256) {
		sig_len = der_ecdsa_from_raw(sig, op->field_len, der);
		sig = der;
	}
	rv = kb_verify(op->path, op->key_id, op->kmech, in, in_len, sig, sig_len, &valid);
	if (rv != CKR_OK)
		return rv;
	return valid ? CKR_OK : CKR_SIGNATURE_INVALID;
}

/* Takes the operation out of the session (which then has none), so the
 * bus call runs without g_lock. */
static void op_take(op_t *dst, op_t *src)
{
	*dst = *src;
	memset(src, 0, sizeof *src);
}

/* The data a one-part call (multi 0: data, len) or a final one (multi 1:
 * what the updates collected) works on; never NULL. len is in and out. */
static const unsigned char *final_input(const op_t *op, int multi, const unsigned char *data, size_t *len)
{
	if (multi) {
		*len = op->buf_len;
		return op->buf ? op->buf : (const unsigned char *)"";
	}
	return data ? data : (const unsigned char *)"";
}

static CK_RV sign_final(CK_SESSION_HANDLE h, int multi, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
			CK_ULONG_PTR sig_len)
{
	op_t *cur, op;
	const unsigned char *in;
	size_t in_len = len;
	CK_RV rv;

	if ((rv = active_op(h, OP_SIGN, &cur)) != CKR_OK)
		return rv;
	if (!sig_len || (!multi && !data && len))
		return op_fail(cur, CKR_ARGUMENTS_BAD);
	if (size_only(sig, sig_len, cur->out_len, &rv)) {
		g_unlock();
		return rv;
	}
	op_take(&op, cur);
	g_unlock();
	in = final_input(&op, multi, data, &in_len);
	rv = do_sign(&op, in, in_len, sig, sig_len);
	op_clear(&op);
	return rv;
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	return sign_final(h, 0, data, len, sig, sig_len);
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
	return sign_final(h, 1, NULL, 0, sig, sig_len);
}

/* Multi-part data is collected (keyd takes at most 1 MiB at once). */
static CK_RV update(CK_SESSION_HANDLE h, int kind, CK_BYTE_PTR part, CK_ULONG len)
{
	op_t *op;
	CK_RV rv;
	unsigned char *nb;

	if (!part && len)
		return CKR_ARGUMENTS_BAD;
	if ((rv = active_op(h, kind, &op)) != CKR_OK)
		return rv;
	if (len > MAX_DATA || op->buf_len + len > MAX_DATA)
		return op_fail(op, CKR_DATA_LEN_RANGE);
	if (len) {
		if (!(nb = realloc(op->buf, op->buf_len + len)))
			return op_fail(op, CKR_HOST_MEMORY);
		memcpy(nb + op->buf_len, part, len);
		op->buf = nb;
		op->buf_len += len;
	}
	g_unlock();
	return CKR_OK;
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
	return update(h, OP_SIGN, part, len);
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
	return update(h, OP_VERIFY, part, len);
}

static CK_RV verify_final(CK_SESSION_HANDLE h, int multi, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
			  CK_ULONG sig_len)
{
	op_t *cur, op;
	const unsigned char *in;
	size_t in_len = len;
	CK_RV rv;

	if ((rv = active_op(h, OP_VERIFY, &cur)) != CKR_OK)
		return rv;
	op_take(&op, cur);
	g_unlock();
	if (!sig || (!multi && !data && len)) {
		rv = CKR_ARGUMENTS_BAD;
	} else {
		in = final_input(&op, multi, data, &in_len);
		rv = do_verify(&op, in, in_len, sig, sig_len);
	}
	op_clear(&op);
	return rv;
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	return verify_final(h, 0, data, len, sig, sig_len);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
	return verify_final(h, 1, NULL, 0, sig, sig_len);
}

static kopts_t op_opts(const op_t *op)
{
	kopts_t o = {op->iv, op->aad, op->label, op->iv_len, op->aad_len, op->label_len};
	return o;
}

CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	op_t *cur, op;
	kopts_t o;
	unsigned char *res = NULL;
	size_t res_len = 0, need;
	CK_RV rv;

	if ((rv = active_op(h, OP_ENCRYPT, &cur)) != CKR_OK)
		return rv;
	if (!out_len || (!data && len))
		return op_fail(cur, CKR_ARGUMENTS_BAD);
	/* OAEP with SHA-256 fits k - 66 bytes. */
	if (len > MAX_DATA || (cur->mech == CKM_RSA_PKCS_OAEP && len + 66 > cur->out_len))
		return op_fail(cur, CKR_DATA_LEN_RANGE);
	need = cur->mech == CKM_AES_GCM ? len + 16 : cur->out_len;
	if (size_only(out, out_len, need, &rv)) {
		g_unlock();
		return rv;
	}
	op_take(&op, cur);
	g_unlock();
	o = op_opts(&op);
	rv = kb_key_op(op.path, op.key_id, "Encrypt", op.kmech, data ? data : (unsigned char *)"", len, &o, &res,
		       &res_len);
	if (rv == CKR_OK && res_len != need) {
		p11_log(LOG_ERR, "Encrypt with key %s: keyd's result has an unexpected length", op.key_id);
		rv = CKR_FUNCTION_FAILED;
	}
	if (rv == CKR_OK) {
		memcpy(out, res, res_len);
		*out_len = res_len;
	}
	free(res);
	op_clear(&op);
	return rv;
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	session_t *s;
	op_t *cur, op;
	kopts_t o;
	unsigned char *res = NULL;
	size_t res_len = 0, most;
	CK_RV rv;

	if ((rv = active_op(h, OP_DECRYPT, &cur)) != CKR_OK)
		return rv;
	if (!out_len || (!data && len))
		return op_fail(cur, CKR_ARGUMENTS_BAD);
	if (cur->result) { /* the result of a call whose buffer was too small */
		if (!size_only(out, out_len, cur->result_len, &rv)) {
			memcpy(out, cur->result, cur->result_len);
			*out_len = cur->result_len;
			op_clear(cur);
		}
		g_unlock();
		return rv;
	}
	if (cur->mech == CKM_AES_GCM ? (len < 16 || len > MAX_DATA) : len != cur->out_len)
		return op_fail(cur, CKR_ENCRYPTED_DATA_LEN_RANGE);
	most = cur->mech == CKM_AES_GCM ? len - 16 : cur->out_len;
	if (!out) {
		*out_len = most;
		g_unlock();
		return CKR_OK;
	}
	op_take(&op, cur);
	g_unlock();
	o = op_opts(&op);
	rv = kb_key_op(op.path, op.key_id, "Decrypt", op.kmech, data, len, &o, &res, &res_len);
	if (rv == CKR_DATA_INVALID)
		rv = CKR_ENCRYPTED_DATA_INVALID; /* tampered, or another key/iv/aad/label */
	if (rv == CKR_OK && res_len > most) {
		rv = CKR_FUNCTION_FAILED;
	} else if (rv == CKR_OK && res_len > *out_len) {
		/* Keep the result for the call with a larger buffer. */
		*out_len = res_len;
		if (session_get(h, &s) == CKR_OK) {
			if (!s->dec.active) {
				op.result = res;
				op.result_len = res_len;
				res = NULL;
				op_take(&s->dec, &op);
			}
			g_unlock();
		}
		rv = CKR_BUFFER_TOO_SMALL;
	} else if (rv == CKR_OK) {
		memcpy(out, res, res_len);
		*out_len = res_len;
	}
	free(res);
	op_clear(&op);
	return rv;
}
