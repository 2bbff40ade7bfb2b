/* p11host: a C host process for libedgev2-pkcs11.so, as the tests need one:
 * it dlopen()s the module like any PKCS#11 consumer and
 *   sign LABEL               signs the test digest with CKM_ECDSA, prints the signature (hex)
 *   fork LABEL               signs, forks; one child re-initialises, one carries on; parent signs after
 *   threads LABEL T N        T threads, each with its own session, sign N times and verify
 *   signals LABEL N          signs and verifies N times while a 100 µs interval timer interrupts
 *                            every blocking call (a handler without SA_RESTART, as Go's SIGURG)
 *   robust EC RSA AES HMAC   bad arguments get the named errors; good ones work
 *   cycle LABEL              C_Initialize/C_Finalize cycles leave no thread and no fd behind
 * Exit 0 only if every check passed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR f;
static int failures;
static const unsigned char digest[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
					  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

#define EXPECT(call, want)                                                                          \
	do {                                                                                        \
		CK_RV rv_ = (call);                                                                 \
		if (rv_ != (CK_RV)(want)) {                                                         \
			fprintf(stderr, "FAIL line %d: %s = 0x%lx, want 0x%lx (%s)\n", __LINE__, #call, \
				(unsigned long)rv_, (unsigned long)(want), #want);                  \
			failures++;                                                                 \
		}                                                                                   \
	} while (0)

#define CHECK(cond)                                                               \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond); \
			failures++;                                               \
		}                                                                 \
	} while (0)

static void die(const char *what, CK_RV rv)
{
	fprintf(stderr, "%s: 0x%lx\n", what, (unsigned long)rv);
	exit(2);
}

static void *load(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		exit(2);
	}
	gfl = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList");
	if (!gfl || gfl(&f) != CKR_OK)
		die("C_GetFunctionList", 0);
	return h;
}

static CK_SESSION_HANDLE open_session(void)
{
	CK_SESSION_HANDLE s;
	CK_RV rv = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		die("C_OpenSession", rv);
	return s;
}

static CK_OBJECT_HANDLE find(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE o[2];
	CK_ULONG n = 0;
	CK_RV rv;
	if ((rv = f->C_FindObjectsInit(s, t, 2)) != CKR_OK)
		die("C_FindObjectsInit", rv);
	if ((rv = f->C_FindObjects(s, o, 2, &n)) != CKR_OK)
		die("C_FindObjects", rv);
	f->C_FindObjectsFinal(s);
	if (n != 1) {
		fprintf(stderr, "found %lu objects of class %lu labelled %s\n", (unsigned long)n, (unsigned long)cls,
			label);
		exit(2);
	}
	return o[0];
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, unsigned char *sig, CK_ULONG *len)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_RV rv = f->C_SignInit(s, &m, key);
	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(s, (CK_BYTE_PTR)digest, sizeof digest, sig, len);
}

static void print_sig(const char *tag, const unsigned char *sig, CK_ULONG len)
{
	printf("%s ", tag);
	for (CK_ULONG i = 0; i < len; i++)
		printf("%02x", sig[i]);
	printf("\n");
	fflush(stdout);
}

static int sign_and_print(const char *tag, CK_SESSION_HANDLE s, const char *label)
{
	unsigned char sig[132];
	CK_ULONG len = sizeof sig;
	CK_RV rv = sign(s, find(s, CKO_PRIVATE_KEY, label), sig, &len);
	if (rv != CKR_OK) {
		fprintf(stderr, "%s: sign: 0x%lx\n", tag, (unsigned long)rv);
		return 1;
	}
	print_sig(tag, sig, len);
	return 0;
}

static int mode_fork(const char *label)
{
	CK_SESSION_HANDLE s;
	int bad = 0;
	pid_t a, b;
	int st;

	if (f->C_Initialize(NULL) != CKR_OK)
		die("C_Initialize", 0);
	s = open_session();
	bad |= sign_and_print("parent", s, label);
	a = fork();
	if (a == 0) { /* the child starts afresh, as PKCS#11 asks of it */
		CK_RV rv = f->C_Initialize(NULL);
		if (rv != CKR_OK) {
			fprintf(stderr, "child C_Initialize: 0x%lx\n", (unsigned long)rv);
			_exit(1);
		}
		_exit(sign_and_print("child-reinit", open_session(), label) | (f->C_Finalize(NULL) != CKR_OK));
	}
	waitpid(a, &st, 0);
	bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	b = fork();
	if (b == 0) /* a child that carries on with the parent's session */
		_exit(sign_and_print("child-inherited", s, label));
	waitpid(b, &st, 0);
	bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	/* The children closed their copies of the parent's bus connection only. */
	bad |= sign_and_print("parent-after", s, label);
	bad |= f->C_Finalize(NULL) != CKR_OK;
	return bad;
}

struct worker {
	const char *label;
	int n, ok;
	pthread_t t;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE priv = find(s, CKO_PRIVATE_KEY, w->label), pub = find(s, CKO_PUBLIC_KEY, w->label);
	for (int i = 0; i < w->n; i++) {
		unsigned char sig[132];
		CK_ULONG len = sizeof sig;
		CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
		if (sign(s, priv, sig, &len) != CKR_OK)
			continue;
		if (f->C_VerifyInit(s, &m, pub) == CKR_OK &&
		    f->C_Verify(s, (CK_BYTE_PTR)digest, sizeof digest, sig, len) == CKR_OK)
			w->ok++;
	}
	f->C_CloseSession(s);
	return NULL;
}

static int mode_threads(const char *label, int nt, int n)
{
	struct worker w[64];
	CK_C_INITIALIZE_ARGS args = {0};
	int total = 0;

	if (nt > 64)
		nt = 64;
	args.flags = CKF_OS_LOCKING_OK;
	if (f->C_Initialize(&args) != CKR_OK)
		die("C_Initialize", 0);
	for (int i = 0; i < nt; i++) {
		w[i] = (struct worker){.label = label, .n = n};
		pthread_create(&w[i].t, NULL, work, &w[i]);
	}
	for (int i = 0; i < nt; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].ok;
	}
	printf("threads %d signed-and-verified %d of %d\n", nt, total, nt * n);
	f->C_Finalize(NULL);
	return total == nt * n ? 0 : 1;
}

static volatile sig_atomic_t ticks;
static void tick(int sig)
{
	(void)sig;
	ticks++;
}

static int mode_signals(const char *label, int n)
{
	struct sigaction sa = {0};
	struct itimerval it = {{0, 100}, {0, 100}};
	struct worker w = {.label = label, .n = n};

	sa.sa_handler = tick; /* no SA_RESTART: poll() returns EINTR */
	sigaction(SIGALRM, &sa, NULL);
	if (f->C_Initialize(NULL) != CKR_OK)
		die("C_Initialize", 0);
	setitimer(ITIMER_REAL, &it, NULL);
	work(&w);
	memset(&it, 0, sizeof it);
	setitimer(ITIMER_REAL, &it, NULL);
	printf("signals %s signed-and-verified %d of %d (%d interrupts)\n", label, w.ok, n, (int)ticks);
	f->C_Finalize(NULL);
	return w.ok == n && ticks > 0 ? 0 : 1;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int mode_cycle(const char *label)
{
	int fds0 = count_dir("/proc/self/fd");
	for (int i = 0; i < 3; i++) {
		if (f->C_Initialize(NULL) != CKR_OK)
			die("C_Initialize", 0);
		if (sign_and_print("cycle", open_session(), label))
			return 1;
		EXPECT(f->C_Finalize(NULL), CKR_OK);
		CHECK(count_dir("/proc/self/task") == 1); /* no thread outlives C_Finalize */
		CHECK(count_dir("/proc/self/fd") == fds0); /* no connection either */
	}
	return failures != 0;
}

static int mode_robust(const char *ec, const char *rsa, const char *aes, const char *hmac)
{
	CK_SESSION_HANDLE s, bogus = 4242;
	CK_OBJECT_HANDLE priv, pub, rsapriv, aeskey, hkey;
	CK_ULONG n, len;
	CK_SLOT_ID slots[2];
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	CK_INFO info;
	CK_C_INITIALIZE_ARGS args;
	unsigned char sig[600], buf[600], ct[600];
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
	CK_BBOOL b;

	EXPECT(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	memset(&args, 0, sizeof args);
	args.pReserved = &n;
	EXPECT(f->C_Initialize(&args), CKR_ARGUMENTS_BAD);
	memset(&args, 0, sizeof args);
	args.CreateMutex = (CK_CREATEMUTEX)1; /* some callbacks but not all */
	EXPECT(f->C_Initialize(&args), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_Initialize(NULL), CKR_OK);
	EXPECT(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);

	EXPECT(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_GetInfo(&info), CKR_OK);
	CHECK(info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40);
	EXPECT(f->C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
	n = 0;
	EXPECT(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_BUFFER_TOO_SMALL);
	CHECK(n == 1);
	EXPECT(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	EXPECT(f->C_GetSlotInfo(7, &si), CKR_SLOT_ID_INVALID);
	EXPECT(f->C_GetSlotInfo(0, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_GetTokenInfo(0, &ti), CKR_OK);
	EXPECT(f->C_GetMechanismList(0, NULL, NULL), CKR_ARGUMENTS_BAD);
	n = 1;
	EXPECT(f->C_GetMechanismList(0, slots, &n), CKR_BUFFER_TOO_SMALL);
	CHECK(n == 9);
	EXPECT(f->C_GetMechanismInfo(0, CKM_MD5, (CK_MECHANISM_INFO_PTR)&info), CKR_MECHANISM_INVALID);

	EXPECT(f->C_OpenSession(0, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_OpenSession(3, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_SLOT_ID_INVALID);
	EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	EXPECT(f->C_GetSessionInfo(bogus, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_CloseSession(bogus), CKR_SESSION_HANDLE_INVALID);

	/* Finding. */
	EXPECT(f->C_FindObjects(s, &priv, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(f->C_FindObjectsInit(s, NULL, 3), CKR_ARGUMENTS_BAD);
	{
		CK_ATTRIBUTE t = {CKA_LABEL, NULL, 5};
		EXPECT(f->C_FindObjectsInit(s, &t, 1), CKR_ARGUMENTS_BAD);
	}
	EXPECT(f->C_FindObjectsInit(bogus, NULL, 0), CKR_SESSION_HANDLE_INVALID);
	EXPECT(f->C_FindObjectsInit(s, NULL, 0), CKR_OK);
	EXPECT(f->C_FindObjectsInit(s, NULL, 0), CKR_OPERATION_ACTIVE);
	EXPECT(f->C_FindObjects(s, NULL, 1, &n), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_FindObjects(s, &priv, 1, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_FindObjectsFinal(s), CKR_OK);
	EXPECT(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
	priv = find(s, CKO_PRIVATE_KEY, ec);
	pub = find(s, CKO_PUBLIC_KEY, ec);
	rsapriv = find(s, CKO_PRIVATE_KEY, rsa);
	aeskey = find(s, CKO_SECRET_KEY, aes);
	hkey = find(s, CKO_SECRET_KEY, hmac);
	find(s, CKO_CERTIFICATE, ec);

	/* Attributes. */
	{
		CK_ATTRIBUTE a[3] = {{CKA_VALUE, buf, sizeof buf}, {CKA_LABEL, buf, 1}, {CKA_SENSITIVE, &b, sizeof b}};
		EXPECT(f->C_GetAttributeValue(s, 99999, a, 1), CKR_OBJECT_HANDLE_INVALID);
		EXPECT(f->C_GetAttributeValue(s, priv, NULL, 1), CKR_ARGUMENTS_BAD);
		EXPECT(f->C_GetAttributeValue(s, priv, a, 1), CKR_ATTRIBUTE_SENSITIVE);
		CHECK(a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
		EXPECT(f->C_GetAttributeValue(s, priv, a + 1, 1), CKR_BUFFER_TOO_SMALL);
		CHECK(a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
		a[1].pValue = NULL;
		EXPECT(f->C_GetAttributeValue(s, priv, a + 1, 1), CKR_OK);
		CHECK(a[1].ulValueLen == strlen(ec));
		EXPECT(f->C_GetAttributeValue(s, priv, a + 2, 1), CKR_OK);
		CHECK(b == CK_TRUE);
		a[2].type = CKA_EXTRACTABLE;
		EXPECT(f->C_GetAttributeValue(s, priv, a + 2, 1), CKR_OK);
		CHECK(b == CK_FALSE);
		a[2].type = CKA_VALUE;
		EXPECT(f->C_GetAttributeValue(s, aeskey, a + 2, 1), CKR_ATTRIBUTE_SENSITIVE);
		a[2].type = 0x7fff0001; /* no such attribute */
		EXPECT(f->C_GetAttributeValue(s, priv, a + 2, 1), CKR_ATTRIBUTE_TYPE_INVALID);
	}

	/* Signing: argument checks, sizes, mechanisms that do not fit. */
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(f->C_SignInit(s, NULL, priv), CKR_ARGUMENTS_BAD);
	{
		CK_MECHANISM bad = {CKM_ECDSA, NULL, 4};
		EXPECT(f->C_SignInit(s, &bad, priv), CKR_ARGUMENTS_BAD);
		bad.mechanism = CKM_MD5_RSA_PKCS;
		bad.ulParameterLen = 0;
		EXPECT(f->C_SignInit(s, &bad, rsapriv), CKR_MECHANISM_INVALID);
		bad.mechanism = CKM_RSA_PKCS;
		EXPECT(f->C_SignInit(s, &bad, priv), CKR_KEY_TYPE_INCONSISTENT);
		bad.mechanism = CKM_ECDSA_SHA384; /* keyd has no such mechanism */
		EXPECT(f->C_SignInit(s, &bad, priv), CKR_MECHANISM_INVALID);
	}
	EXPECT(f->C_SignInit(s, &ecdsa, 99999), CKR_KEY_HANDLE_INVALID);
	EXPECT(f->C_SignInit(s, &ecdsa, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	EXPECT(f->C_SignInit(bogus, &ecdsa, priv), CKR_SESSION_HANDLE_INVALID);
	EXPECT(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	EXPECT(f->C_SignInit(s, &ecdsa, priv), CKR_OPERATION_ACTIVE);
	len = 0;
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, NULL, &len), CKR_OK);
	CHECK(len == 64);
	len = 10;
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_BUFFER_TOO_SMALL);
	CHECK(len == 64);
	len = sizeof sig;
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 5, sig, &len), CKR_DATA_LEN_RANGE);
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	EXPECT(f->C_Sign(s, NULL, 32, sig, &len), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_SignInit(s, &ecdsa, priv), CKR_OK);
	len = sizeof sig;
	EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_OK);
	CHECK(len == 64);

	/* Verifying. */
	EXPECT(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	EXPECT(f->C_Verify(s, (CK_BYTE_PTR)digest, 32, sig, 63), CKR_SIGNATURE_LEN_RANGE);
	EXPECT(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	EXPECT(f->C_Verify(s, (CK_BYTE_PTR)digest, 32, sig, 64), CKR_OK);
	sig[5] ^= 1;
	EXPECT(f->C_VerifyInit(s, &ecdsa, pub), CKR_OK);
	EXPECT(f->C_Verify(s, (CK_BYTE_PTR)digest, 32, sig, 64), CKR_SIGNATURE_INVALID);

	/* Multi-part ECDSA-SHA256 over 3 parts = one part. */
	{
		CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
		EXPECT(f->C_SignInit(s, &m, priv), CKR_OK);
		EXPECT(f->C_SignUpdate(s, (CK_BYTE_PTR) "hello ", 6), CKR_OK);
		EXPECT(f->C_SignUpdate(s, NULL, 3), CKR_ARGUMENTS_BAD);
		EXPECT(f->C_SignUpdate(s, (CK_BYTE_PTR) "world", 5), CKR_OK);
		len = sizeof sig;
		EXPECT(f->C_SignFinal(s, sig, &len), CKR_OK);
		EXPECT(f->C_VerifyInit(s, &m, pub), CKR_OK);
		EXPECT(f->C_Verify(s, (CK_BYTE_PTR) "hello world", 11, sig, len), CKR_OK);
	}

	/* RSA PSS parameters keyd cannot honour. */
	{
		CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 20};
		CK_MECHANISM m = {CKM_RSA_PKCS_PSS, &p, sizeof p};
		EXPECT(f->C_SignInit(s, &m, rsapriv), CKR_MECHANISM_PARAM_INVALID);
		p.sLen = 32;
		m.ulParameterLen = 3;
		EXPECT(f->C_SignInit(s, &m, rsapriv), CKR_MECHANISM_PARAM_INVALID);
		m.ulParameterLen = sizeof p;
		EXPECT(f->C_SignInit(s, &m, rsapriv), CKR_OK);
		len = sizeof sig;
		EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 31, sig, &len), CKR_DATA_LEN_RANGE);
		EXPECT(f->C_SignInit(s, &m, rsapriv), CKR_OK);
		len = sizeof sig;
		EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_OK);
		CHECK(len == 256);
	}
	/* CKM_RSA_PKCS takes a DigestInfo only. */
	{
		CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
		EXPECT(f->C_SignInit(s, &m, rsapriv), CKR_OK);
		len = sizeof sig;
		EXPECT(f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, &len), CKR_DATA_INVALID);
	}

	/* AES-GCM through the secret key: round trip, tamper, bad parameters. */
	{
		unsigned char iv[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2}, pt[64];
		CK_GCM_PARAMS g = {iv, 12, 96, (CK_BYTE_PTR) "aad", 3, 128};
		CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof g};
		CK_ULONG ctlen = sizeof ct, ptlen;
		g.ulIvLen = 8;
		EXPECT(f->C_EncryptInit(s, &m, aeskey), CKR_MECHANISM_PARAM_INVALID);
		g.ulIvLen = 12;
		EXPECT(f->C_EncryptInit(s, &m, priv), CKR_KEY_TYPE_INCONSISTENT);
		EXPECT(f->C_EncryptInit(s, &m, aeskey), CKR_OK);
		EXPECT(f->C_Encrypt(s, (CK_BYTE_PTR) "secret", 6, NULL, &ctlen), CKR_OK);
		CHECK(ctlen == 22);
		EXPECT(f->C_Encrypt(s, (CK_BYTE_PTR) "secret", 6, ct, &ctlen), CKR_OK);
		EXPECT(f->C_DecryptInit(s, &m, aeskey), CKR_OK);
		ptlen = 2;
		EXPECT(f->C_Decrypt(s, ct, ctlen, pt, &ptlen), CKR_BUFFER_TOO_SMALL);
		CHECK(ptlen == 6);
		ptlen = sizeof pt;
		EXPECT(f->C_Decrypt(s, ct, ctlen, pt, &ptlen), CKR_OK);
		CHECK(ptlen == 6 && memcmp(pt, "secret", 6) == 0);
		ct[0] ^= 1;
		EXPECT(f->C_DecryptInit(s, &m, aeskey), CKR_OK);
		ptlen = sizeof pt;
		EXPECT(f->C_Decrypt(s, ct, ctlen, pt, &ptlen), CKR_ENCRYPTED_DATA_INVALID);
		EXPECT(f->C_DecryptInit(s, &m, aeskey), CKR_OK);
		ptlen = sizeof pt;
		EXPECT(f->C_Decrypt(s, ct, 10, pt, &ptlen), CKR_ENCRYPTED_DATA_LEN_RANGE);
	}
	/* HMAC-SHA256. */
	{
		CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
		EXPECT(f->C_SignInit(s, &m, hkey), CKR_OK);
		len = sizeof sig;
		EXPECT(f->C_Sign(s, (CK_BYTE_PTR) "msg", 3, sig, &len), CKR_OK);
		CHECK(len == 32);
		EXPECT(f->C_VerifyInit(s, &m, hkey), CKR_OK);
		EXPECT(f->C_Verify(s, (CK_BYTE_PTR) "msg", 3, sig, len), CKR_OK);
		EXPECT(f->C_VerifyInit(s, &m, hkey), CKR_OK);
		EXPECT(f->C_Verify(s, (CK_BYTE_PTR) "msh", 3, sig, len), CKR_SIGNATURE_INVALID);
	}

	EXPECT(f->C_Login(s, CKU_USER, NULL, 4), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_CloseSession(s), CKR_OK);
	EXPECT(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
	EXPECT(f->C_Finalize(&n), CKR_ARGUMENTS_BAD);
	EXPECT(f->C_Finalize(NULL), CKR_OK);
	EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_CRYPTOKI_NOT_INITIALIZED);
	printf("robust: %d failures\n", failures);
	return failures != 0;
}

int main(int argc, char **argv)
{
	void *h;
	int rc = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: p11host MODULE MODE ARGS...\n");
		return 2;
	}
	h = load(argv[1]);
	if (strcmp(argv[2], "sign") == 0) {
		if (f->C_Initialize(NULL) != CKR_OK)
			die("C_Initialize", 0);
		rc = sign_and_print("sig", open_session(), argv[3]);
		f->C_Finalize(NULL);
	} else if (strcmp(argv[2], "fork") == 0) {
		rc = mode_fork(argv[3]);
	} else if (strcmp(argv[2], "threads") == 0 && argc == 6) {
		rc = mode_threads(argv[3], atoi(argv[4]), atoi(argv[5]));
	} else if (strcmp(argv[2], "signals") == 0 && argc == 5) {
		rc = mode_signals(argv[3], atoi(argv[4]));
	} else if (strcmp(argv[2], "cycle") == 0) {
		rc = mode_cycle(argv[3]);
	} else if (strcmp(argv[2], "robust") == 0 && argc == 7) {
		rc = mode_robust(argv[3], argv[4], argv[5], argv[6]);
	}
	dlclose(h);
	if (strcmp(argv[2], "cycle") == 0) {
		/* The module's pthread_atfork handler went with it: forking now
		 * must not call into unmapped code. */
		int st;
		pid_t c = fork();
		if (c == 0)
			_exit(0);
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "FAIL: fork after dlclose\n");
			rc = 1;
		}
	}
	return rc;
}
