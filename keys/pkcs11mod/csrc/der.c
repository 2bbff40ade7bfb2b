/* Just enough DER for the module: public keys (SubjectPublicKeyInfo) into
 * PKCS#11 attributes, certificates' subject/issuer/serial/key, ECDSA
 * signatures between DER and PKCS#11's r||s, PEM to DER, and DigestInfo. Every
 * length is checked against what is left; nothing here trusts its input. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int der_read(const unsigned char **p, size_t *left, der_t *out)
{
	const unsigned char *s = *p;
	size_t n = *left, len, hdr = 2;

	if (n < 2)
		return -1;
	if ((s[0] & 0x1f) == 0x1f)
		return -1; /* multi-byte tags: none in what we read */
	len = s[1];
	if (len & 0x80) {
		size_t k = len & 0x7f;
		if (k == 0 || k > 4 || n < 2 + k)
			return -1;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = (len << 8) | s[2 + i];
		hdr += k;
	}
	if (len > n - hdr)
		return -1;
	out->tag = s[0];
	out->val = s + hdr;
	out->len = len;
	out->raw = s;
	out->raw_len = hdr + len;
	*p = s + hdr + len;
	*left = n - hdr - len;
	return 0;
}

static unsigned char *dup_bytes(const unsigned char *b, size_t n)
{
	unsigned char *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, b, n);
	return d;
}

static const unsigned char oid_ec_pubkey[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_rsa[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};

static int raw_is(const der_t *d, const unsigned char *oid, size_t n)
{
	return d->raw_len == n && memcmp(d->raw, oid, n) == 0;
}

/* Strip an INTEGER's sign byte. */
static void int_value(const der_t *d, const unsigned char **v, size_t *n)
{
	*v = d->val;
	*n = d->len;
	while (*n > 1 && (*v)[0] == 0) {
		(*v)++;
		(*n)--;
	}
}

int der_parse_spki(obj_t *o)
{
	const unsigned char *p = o->spki, *q;
	size_t left = o->spki_len, ql;
	der_t spki, alg, oid, param, bits;

	if (der_read(&p, &left, &spki) || spki.tag != 0x30 || left != 0)
		return -1;
	q = spki.val;
	ql = spki.len;
	if (der_read(&q, &ql, &alg) || alg.tag != 0x30 || der_read(&q, &ql, &bits) || bits.tag != 0x03 ||
	    bits.len < 2 || bits.val[0] != 0)
		return -1;
	p = alg.val;
	left = alg.len;
	if (der_read(&p, &left, &oid) || oid.tag != 0x06)
		return -1;
	if (raw_is(&oid, oid_ec_pubkey, sizeof oid_ec_pubkey)) {
		size_t plen = bits.len - 1;
		if (der_read(&p, &left, &param) || param.tag != 0x06)
			return -1;
		if (raw_is(&param, oid_p256, sizeof oid_p256))
			o->field_len = 32;
		else if (raw_is(&param, oid_p384, sizeof oid_p384))
			o->field_len = 48;
		else
			return -1;
		if (plen != 1 + 2 * o->field_len || bits.val[1] != 0x04 || plen > 127)
			return -1;
		o->ktype = CKK_EC;
		o->ec_params = dup_bytes(param.raw, param.raw_len);
		o->ec_params_len = param.raw_len;
		/* CKA_EC_POINT: the point as a DER OCTET STRING. */
		o->ec_point = malloc(plen + 2);
		if (!o->ec_params || !o->ec_point)
			return -1;
		o->ec_point[0] = 0x04;
		o->ec_point[1] = (unsigned char)plen;
		memcpy(o->ec_point + 2, bits.val + 1, plen);
		o->ec_point_len = plen + 2;
		return 0;
	}
	if (raw_is(&oid, oid_rsa, sizeof oid_rsa)) {
		der_t seq, n, e;
		const unsigned char *v;
		size_t vl;
		p = bits.val + 1;
		left = bits.len - 1;
		if (der_read(&p, &left, &seq) || seq.tag != 0x30)
			return -1;
		p = seq.val;
		left = seq.len;
		if (der_read(&p, &left, &n) || n.tag != 0x02 || der_read(&p, &left, &e) || e.tag != 0x02)
			return -1;
		o->ktype = CKK_RSA;
		int_value(&n, &v, &vl);
		o->modulus = dup_bytes(v, vl);
		o->modulus_len = vl;
		int_value(&e, &v, &vl);
		o->exponent = dup_bytes(v, vl);
		o->exponent_len = vl;
		return o->modulus && o->exponent ? 0 : -1;
	}
	return -1;
}

int der_parse_cert(const unsigned char *der, size_t len, const unsigned char **spki, size_t *spki_len, obj_t *o)
{
	const unsigned char *p = der;
	size_t left = len;
	der_t cert, tbs, f, serial, issuer, subject, key;

	if (der_read(&p, &left, &cert) || cert.tag != 0x30 || left != 0)
		return -1;
	p = cert.val;
	left = cert.len;
	if (der_read(&p, &left, &tbs) || tbs.tag != 0x30)
		return -1;
	p = tbs.val;
	left = tbs.len;
	if (der_read(&p, &left, &f))
		return -1;
	if (f.tag == 0xa0 && der_read(&p, &left, &f)) /* [0] version */
		return -1;
	serial = f;
	if (serial.tag != 0x02)
		return -1;
	if (der_read(&p, &left, &f) || f.tag != 0x30 || /* signature algorithm */
	    der_read(&p, &left, &issuer) || issuer.tag != 0x30 ||
	    der_read(&p, &left, &f) || f.tag != 0x30 || /* validity */
	    der_read(&p, &left, &subject) || subject.tag != 0x30 ||
	    der_read(&p, &left, &key) || key.tag != 0x30)
		return -1;
	*spki = key.raw;
	*spki_len = key.raw_len;
	o->subject = dup_bytes(subject.raw, subject.raw_len);
	o->subject_len = subject.raw_len;
	o->issuer = dup_bytes(issuer.raw, issuer.raw_len);
	o->issuer_len = issuer.raw_len;
	o->serial = dup_bytes(serial.raw, serial.raw_len);
	o->serial_len = serial.raw_len;
	return o->subject && o->issuer && o->serial ? 0 : -1;
}

int der_ecdsa_to_raw(const unsigned char *der, size_t len, size_t field, unsigned char *out)
{
	const unsigned char *p = der, *v;
	size_t left = len, vl;
	der_t seq, r, s;

	if (der_read(&p, &left, &seq) || seq.tag != 0x30 || left != 0)
		return -1;
	p = seq.val;
	left = seq.len;
	if (der_read(&p, &left, &r) || r.tag != 0x02 || der_read(&p, &left, &s) || s.tag != 0x02 || left != 0)
		return -1;
	memset(out, 0, 2 * field);
	int_value(&r, &v, &vl);
	if (vl > field)
		return -1;
	memcpy(out + field - vl, v, vl);
	int_value(&s, &v, &vl);
	if (vl > field)
		return -1;
	memcpy(out + 2 * field - vl, v, vl);
	return 0;
}

static size_t put_int(unsigned char *o, const unsigned char *v, size_t n)
{
	size_t i = 0, k = 0;
	while (n > 1 && v[0] == 0) {
		v++;
		n--;
	}
	o[k++] = 0x02;
	o[k++] = (unsigned char)(n + (v[0] & 0x80 ? 1 : 0));
	if (v[0] & 0x80)
		o[k++] = 0;
	for (; i < n; i++)
		o[k++] = v[i];
	return k;
}

/* ECDSA r||s (each field bytes) to DER, for keyd's Verify; out holds
 * 2 + 2 * (3 + 64) bytes. */
size_t der_ecdsa_from_raw(const unsigned char *raw, size_t field, unsigned char *out)
{
	unsigned char body[2 * (3 + 64)];
	size_t n = put_int(body, raw, field);
	n += put_int(body + n, raw + field, field);
	out[0] = 0x30;
	out[1] = (unsigned char)n;
	memcpy(out + 2, body, n);
	return n + 2;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int pem_first_cert(const char *pem, unsigned char **der, size_t *der_len)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----", end[] = "-----END CERTIFICATE-----";
	const char *s = strstr(pem, begin), *e;
	unsigned char *out;
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;

	if (!s)
		return -1;
	s += sizeof begin - 1;
	e = strstr(s, end);
	if (!e)
		return -1;
	out = malloc((size_t)(e - s) * 3 / 4 + 3);
	if (!out)
		return -1;
	for (; s < e; s++) {
		int v;
		if (*s == '=' || *s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')
			continue;
		v = b64val((unsigned char)*s);
		if (v < 0) {
			free(out);
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	*der = out;
	*der_len = n;
	return 0;
}

/* DigestInfo headers (RFC 8017 9.2 note 1), with and without the NULL. */
static const struct {
	unsigned char hdr[19];
	size_t hdr_len, digest_len;
} digestinfos[] = {
	{{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, 19, 32},
	{{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}, 19, 48},
	{{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}, 19, 64},
	{{0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x04, 0x20}, 17, 32},
	{{0x30, 0x3f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x04, 0x30}, 17, 48},
	{{0x30, 0x4f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x04, 0x40}, 17, 64},
};

int digestinfo_strip(const unsigned char *in, size_t len, const unsigned char **digest, size_t *dlen)
{
	for (size_t i = 0; i < sizeof digestinfos / sizeof digestinfos[0]; i++) {
		size_t h = digestinfos[i].hdr_len;
		if (len == h + digestinfos[i].digest_len && memcmp(in, digestinfos[i].hdr, h) == 0) {
			*digest = in + h;
			*dlen = digestinfos[i].digest_len;
			return 0;
		}
	}
	return -1;
}
