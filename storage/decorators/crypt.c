/* SPDX-License-Identifier: MIT */
/*
 * crypt.c: the XTS-AES-256 encryption decorator
 * (docs/openvmm-compat.md §5.1, §5.4), on OpenSSL.
 *
 * Notes on the design
 * -------------------
 * - Data unit and tweak: one logical sector of the inner disk; the tweak of
 *   LBA L is L as a 16-byte little-endian number (upper 8 bytes zero).
 *   XTS takes one call per data unit, so a run of sectors is, per sector,
 *   a new IV (key = NULL: the key schedule is set once, when a context is
 *   made) and one cipher call.
 * - Two ways to make those calls. EVP: EVP_CipherInit_ex(key NULL, iv) +
 *   EVP_CipherUpdate. OpenSSL 3.0's EVP looks the IV length up through
 *   the provider's parameter API (string compares) on every IV change,
 *   a large share of the time at 512-byte sectors (docs/decorator-crypt.md,
 *   "Implementation"). So
 *   with OpenSSL 3 the default is the provider path: the same
 *   implementation EVP_CIPHER_fetch("AES-256-XTS") picks, called through
 *   its public dispatch table (OSSL_PROVIDER_query_operation: newctx,
 *   encrypt_init/decrypt_init with key NULL and the tweak, cipher,
 *   freectx) - exactly the calls EVP makes, without the lookups. If the
 *   table lacks any of them, or DISKSTACK_CRYPT_EVP is set in the
 *   environment when the disk is opened, EVP is used; the tests run both.
 * - Contexts: a pair (encrypt, decrypt) of cipher contexts per disk and
 *   reactor, made on the reactor's first request and kept until the disk
 *   closes (struct crypt_pctx). The disk owns them on a push-only lock-free
 *   list, so closing the disk frees every key schedule (the frees wipe
 *   them) whatever the state of the reactors. Each reactor finds its pair
 *   through a small direct-mapped cache in its REACTOR_LOCAL_CRYPT slot,
 *   keyed by the disk's uid (a 64-bit counter never reused, so an entry
 *   left by a closed disk can never match and is never dereferenced). A
 *   context is only ever used by the thread of the reactor that owns it.
 *   The contexts of a reactor that goes away stay on the list until the
 *   disk closes (a later reactor at the same address may adopt them): one
 *   pair per thread that ever used the disk.
 * - Key material: the raw key lives in one mmap'd page, mlock'd (when the
 *   limit allows) and excluded from core dumps, for the disk's lifetime (new
 *   reactors need it), and is wiped with OPENSSL_cleanse on close. It is
 *   never logged or described. XXX: the key schedules inside OpenSSL's
 *   contexts are ordinary heap memory (wiped when freed: both EVP's and
 *   the provider's freectx clear them; not locked).
 * - Two data paths, chosen when the disk is opened:
 *   - Fused, when the inner disk advertises DISK_CAP_XFORM (mem:,
 *     memdiff:; see disk.h and layered.c): a read or write of at least
 *     one sector goes down as one child request carrying the reactor's
 *     decrypt or encrypt context as its transform (struct disk_xform), and
 *     the RAM layer decrypts from its pages straight into the caller's
 *     buffers or encrypts from them straight into its pages. The issue
 *     asks to "decrypt in place after the inner read"; over RAM the inner
 *     read is itself a copy, so this is the same result with one pass over
 *     the data fewer (and no staging buffer for writes): 0.64 -> 0.80 of
 *     `openssl speed` for reads at 512-byte sectors, 0.58 -> 0.81 for
 *     writes (docs/decorator-crypt.md). The transform runs on the
 *     request's reactor thread, the one that owns the contexts. Counters
 *     per context (crypt_fused_counts) let the tests see it is taken.
 *     DISKSTACK_CRYPT_NOFUSE in the environment at open forces the copy
 *     path. Zero-length requests, write-zeroes and everything else stay
 *     as below.
 *   - Copy, over every other inner disk. Read: the inner disk reads the
 *     ciphertext straight into the caller's buffers, then each sector is
 *     decrypted in place. A sector that straddles two iovec entries goes
 *     through the context's one-sector bounce buffer. Write: the caller's
 *     buffers are never written to (nor read twice): sectors are encrypted
 *     out of place into a staging buffer from the reactor's buffer cache,
 *     which is then written with the same FUA flag. Requests above
 *     CRYPT_CHUNK_BYTES are done in chunks, one after the other through
 *     one staging buffer; such a request is range-checked first so a
 *     write past the end changes nothing.
 * - The crypt disk itself never advertises DISK_CAP_XFORM (a transform
 *   from above would have to be composed with the cipher).
 * - Write-zeroes encrypts zero sectors (the inner disk's own write-zeroes
 *   or unmap would store zero ciphertext, which decrypts to noise), so it is
 *   never fast: FAST_ZERO gets UNSUPPORTED. Unmap is forwarded raw
 *   (behaviour UNSPECIFIED: unmapped sectors read back as noise).
 * - Block status: every sector is reported as data (no HOLE, no ZERO). A
 *   hole of the inner disk reads as zero ciphertext, i.e. noise, so ZERO
 *   would be wrong (a copy would skip it and leave noise behind), and HOLE
 *   alone is read as "zeroes" by a disk-as-layer. CACHE is forwarded to the
 *   inner disk (prefetching ciphertext is all a read cache below needs).
 * - Expected workload: 4 KiB-1 MiB requests from many reactors; the cost is
 *   the cipher. Nothing is allocated per request once the caches are warm.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_dispatch.h>
#include <openssl/provider.h>
#endif

#include "common/compiler.h"
#include "common/log.h"
#include "storage/decorators/crypt.h"
#include "storage/kind.h"

/* Largest staging buffer of one request; larger writes go in chunks. */
#define CRYPT_CHUNK_BYTES (1u << 20)
/* OpenSSL refuses XTS data units above 2^20 AES blocks. */
#define CRYPT_MAX_SECTOR (16u << 20)
/* Slots of the per-reactor context cache. */
#define CRYPT_LOCAL_SLOTS 8

/*
 * The provider's own XTS functions (OpenSSL 3), resolved once per process:
 * the implementation EVP_CIPHER_fetch picks, called without EVP's per-call
 * bookkeeping. NULL members mean "use EVP".
 */
struct crypt_prov {
	EVP_CIPHER *cipher;            /* keeps the provider loaded; never freed */
	void *provctx;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	OSSL_FUNC_cipher_newctx_fn *newctx;
	OSSL_FUNC_cipher_freectx_fn *freectx;
	OSSL_FUNC_cipher_encrypt_init_fn *einit;
	OSSL_FUNC_cipher_decrypt_init_fn *dinit;
	OSSL_FUNC_cipher_cipher_fn *cipher_fn;
#endif
	bool ok;
};

/* One direction of the cipher: an EVP context or a provider context. */
struct crypt_ctx {
	EVP_CIPHER_CTX *evp;
	void *alg;                     /* provider path */
	bool enc;
};

/* One reactor's contexts for one disk. Immutable once published, except
 * the contexts' internal state and the counters, which only the owner's
 * thread changes. */
struct crypt_pctx {
	struct crypt_pctx *next;       /* the disk's list */
	struct reactor *owner;         /* the reactor whose thread uses it */
	struct crypt_ctx enc, dec;
	uint8_t *bounce;               /* one sector (straddling sectors) */
	uint32_t ss, shift;            /* the data unit */
	struct disk_xform xf_enc, xf_dec; /* the fused path: ctx = this */
	/* Fused requests sent (owner stores, anyone loads). */
	_Atomic uint64_t fused_reads, fused_writes;
};

/* The page holding the raw key. */
struct crypt_secret {
	uint8_t key[CRYPT_KEY_BYTES];
};

struct crypt_disk {
	uint64_t uid;                  /* keys the per-reactor caches; never reused */
	uint32_t ss;                   /* sector size (the data unit) */
	uint32_t shift;
	struct crypt_secret *secret;   /* mmap'd page, mlock'd if possible */
	size_t secret_len;
	bool secret_locked;
	_Atomic(struct crypt_pctx *) pctxs; /* push-only until close */
	char *key_name;                /* for describe; NULL = none */
	bool use_prov;                 /* the provider path (else EVP) */
	bool fused;                    /* the inner disk applies the cipher (DISK_CAP_XFORM) */
	uint8_t *zero_sector;          /* ss zero bytes: the write-zeroes source */
	uint64_t chunk_sectors;        /* sectors per staging buffer */
};

/* Per-reactor cache: disk uid -> that disk's contexts on this reactor. */
struct crypt_local {
	struct {
		uint64_t uid;          /* 0 = empty */
		struct crypt_pctx *pc;
	} slot[CRYPT_LOCAL_SLOTS];
};

static atomic_uint_fast64_t crypt_next_uid = 1;

static struct crypt_disk *crypt_of(struct disk *d) { return disk_priv(d); }

/* ---- key material -------------------------------------------------------- */

static void crypt_secret_free(struct crypt_disk *cd)
{
	if (!cd->secret)
		return;
	OPENSSL_cleanse(cd->secret, sizeof(*cd->secret));
	if (cd->secret_locked)
		munlock(cd->secret, cd->secret_len);
	munmap(cd->secret, cd->secret_len);
	cd->secret = NULL;
}

static int crypt_secret_new(struct crypt_disk *cd, const uint8_t key[CRYPT_KEY_BYTES])
{
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	cd->secret_len = page > 0 ? (size_t)page : 4096;
	p = mmap(NULL, cd->secret_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	cd->secret = p;
	/* Keep it out of swap and core dumps where the system lets us. */
	cd->secret_locked = mlock(p, cd->secret_len) == 0;
	if (!cd->secret_locked)
		log_debug("crypt: cannot mlock the key page (%s); continuing", strerror(errno));
#ifdef MADV_DONTDUMP
	(void)madvise(p, cd->secret_len, MADV_DONTDUMP);
#endif
	memcpy(cd->secret->key, key, CRYPT_KEY_BYTES);
	return 0;
}

int crypt_key_load(const char *path, uint8_t key[CRYPT_KEY_BYTES], char *err, size_t errlen)
{
	CLEANUP_CLOSE int fd = -1;
	uint8_t extra;
	size_t got = 0;
	struct stat st;
	bool have_st;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "cannot open key file '%s': %s", path, strerror(e));
		return -e;
	}
	have_st = fstat(fd, &st) == 0;
	if (have_st && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "key file '%s' is a directory", path);
		return -EISDIR;
	}
	/* Read up to one byte more than a key, so a longer file is noticed
	 * even when it is a pipe. */
	while (got <= CRYPT_KEY_BYTES) {
		void *dst = got < CRYPT_KEY_BYTES ? (void *)(key + got) : (void *)&extra;
		size_t want = got < CRYPT_KEY_BYTES ? CRYPT_KEY_BYTES - got : 1;
		ssize_t n = read(fd, dst, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			OPENSSL_cleanse(key, CRYPT_KEY_BYTES);
			snprintf(err, errlen, "cannot read key file '%s': %s", path, strerror(e));
			return -e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	OPENSSL_cleanse(&extra, sizeof(extra));
	if (got != CRYPT_KEY_BYTES) {
		OPENSSL_cleanse(key, CRYPT_KEY_BYTES);
		if (got > CRYPT_KEY_BYTES && have_st && S_ISREG(st.st_mode))
			snprintf(err, errlen,
				 "key file '%s' holds %lld bytes; xts-aes-256 needs exactly 64 raw bytes "
				 "(a 32-byte data key, then a 32-byte tweak key)",
				 path, (long long)st.st_size);
		else
			snprintf(err, errlen,
				 "key file '%s' holds %s%zu bytes; xts-aes-256 needs exactly 64 raw bytes "
				 "(a 32-byte data key, then a 32-byte tweak key)",
				 path, got > CRYPT_KEY_BYTES ? "more than " : "",
				 got > CRYPT_KEY_BYTES ? (size_t)CRYPT_KEY_BYTES : got);
		return -EINVAL;
	}
	if (CRYPTO_memcmp(key, key + CRYPT_KEY_BYTES / 2, CRYPT_KEY_BYTES / 2) == 0) {
		OPENSSL_cleanse(key, CRYPT_KEY_BYTES);
		snprintf(err, errlen,
			 "key file '%s': the data key and the tweak key (the two 32-byte halves) are "
			 "identical; XTS needs two different keys", path);
		return -EINVAL;
	}
	return 0;
}

/* ---- per-reactor contexts -------------------------------------------------- */

static struct crypt_prov crypt_prov;
static pthread_once_t crypt_prov_once = PTHREAD_ONCE_INIT;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/* Does the ':'-separated name list @names hold @name? */
static bool crypt_name_in(const char *names, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = names; p && *p;) {
		const char *e = strchr(p, ':');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && strncasecmp(p, name, n) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}
#endif

static void crypt_prov_init(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	struct crypt_prov *cp = &crypt_prov;
	const OSSL_ALGORITHM *algs, *a;
	const OSSL_PROVIDER *prov;
	int no_store = 0;

	cp->cipher = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
	if (!cp->cipher)
		return;
	prov = EVP_CIPHER_get0_provider(cp->cipher);
	if (!prov)
		return;
	cp->provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
	algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store);
	for (a = algs; a && a->algorithm_names; a++) {
		if (!crypt_name_in(a->algorithm_names, "AES-256-XTS"))
			continue;
		for (const OSSL_DISPATCH *f = a->implementation; f->function_id; f++) {
			switch (f->function_id) {
			case OSSL_FUNC_CIPHER_NEWCTX:
				cp->newctx = OSSL_FUNC_cipher_newctx(f);
				break;
			case OSSL_FUNC_CIPHER_FREECTX:
				cp->freectx = OSSL_FUNC_cipher_freectx(f);
				break;
			case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
				cp->einit = OSSL_FUNC_cipher_encrypt_init(f);
				break;
			case OSSL_FUNC_CIPHER_DECRYPT_INIT:
				cp->dinit = OSSL_FUNC_cipher_decrypt_init(f);
				break;
			case OSSL_FUNC_CIPHER_CIPHER:
				cp->cipher_fn = OSSL_FUNC_cipher_cipher(f);
				break;
			}
		}
		break;
	}
	if (algs)
		OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
	cp->ok = cp->provctx && cp->newctx && cp->freectx && cp->einit && cp->dinit &&
		 cp->cipher_fn;
#endif
}

static void crypt_ctx_free(struct crypt_ctx *c)
{
	/* Both frees wipe the key schedule. */
	EVP_CIPHER_CTX_free(c->evp);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	if (c->alg)
		crypt_prov.freectx(c->alg);
#endif
	c->evp = NULL;
	c->alg = NULL;
}

static int crypt_ctx_init(struct crypt_disk *cd, struct crypt_ctx *c, bool enc)
{
	const uint8_t *key = cd->secret->key;

	c->enc = enc;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	if (cd->use_prov) {
		c->alg = crypt_prov.newctx(crypt_prov.provctx);
		if (!c->alg)
			return -ENOMEM;
		if ((enc ? crypt_prov.einit : crypt_prov.dinit)(c->alg, key, CRYPT_KEY_BYTES, NULL, 0,
							       NULL) != 1)
			return -EIO;
		return 0;
	}
#endif
	c->evp = EVP_CIPHER_CTX_new();
	if (!c->evp)
		return -ENOMEM;
	if (EVP_CipherInit_ex(c->evp, EVP_aes_256_xts(), NULL, key, NULL, enc) != 1)
		return -EIO;
	return 0;
}

static void crypt_pctx_free(struct crypt_pctx *pc)
{
	if (!pc)
		return;
	crypt_ctx_free(&pc->enc);
	crypt_ctx_free(&pc->dec);
	free(pc->bounce);
	free(pc);
}

static int crypt_xform(const struct disk_xform *xf, void *dst, const void *src, size_t len,
		       uint64_t sector);

static struct crypt_pctx *crypt_pctx_new(struct crypt_disk *cd, struct reactor *r)
{
	struct crypt_pctx *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->owner = r;
	pc->ss = cd->ss;
	pc->shift = cd->shift;
	pc->xf_enc = (struct disk_xform){ .fn = crypt_xform, .ctx = pc };
	pc->xf_dec = (struct disk_xform){ .fn = crypt_xform, .ctx = pc };
	pc->bounce = malloc(cd->ss);
	if (!pc->bounce || crypt_ctx_init(cd, &pc->enc, true) < 0 ||
	    crypt_ctx_init(cd, &pc->dec, false) < 0) {
		crypt_pctx_free(pc);
		return NULL;
	}
	return pc;
}

static void crypt_local_free(void *p)
{
	free(p);
}

/* The slow path of crypt_pctx_get: find or make @r's contexts. */
static struct crypt_pctx *crypt_pctx_lookup(struct crypt_disk *cd, struct reactor *r)
{
	struct crypt_local *cl = reactor_local_get(r, REACTOR_LOCAL_CRYPT);
	struct crypt_pctx *pc, *head;

	if (!cl) {
		cl = calloc(1, sizeof(*cl));
		if (!cl)
			return NULL;
		reactor_local_set(r, REACTOR_LOCAL_CRYPT, cl, crypt_local_free);
	}
	/* A reactor freed earlier may have had this address; its contexts
	 * are as good as new ones, since only this thread can use them now. */
	head = atomic_load_explicit(&cd->pctxs, memory_order_acquire);
	for (pc = head; pc; pc = pc->next)
		if (pc->owner == r)
			break;
	if (!pc) {
		pc = crypt_pctx_new(cd, r);
		if (!pc) {
			log_error("crypt: cannot set up the cipher contexts");
			return NULL;
		}
		pc->next = head;
		while (!atomic_compare_exchange_weak_explicit(&cd->pctxs, &pc->next, pc,
							      memory_order_release,
							      memory_order_acquire))
			;
	}
	cl->slot[cd->uid % CRYPT_LOCAL_SLOTS].uid = cd->uid;
	cl->slot[cd->uid % CRYPT_LOCAL_SLOTS].pc = pc;
	return pc;
}

/* @r's contexts for @cd (made on first use); NULL on failure. @r must be
 * the calling thread's reactor. */
static inline struct crypt_pctx *crypt_pctx_get(struct crypt_disk *cd, struct reactor *r)
{
	struct crypt_local *cl = reactor_local_get(r, REACTOR_LOCAL_CRYPT);
	unsigned i = (unsigned)(cd->uid % CRYPT_LOCAL_SLOTS);

	if (likely(cl && cl->slot[i].uid == cd->uid))
		return cl->slot[i].pc;
	return crypt_pctx_lookup(cd, r);
}

/* ---- the cipher ------------------------------------------------------------- */

/* The tweak of @lba: 128-bit little-endian (the upper 8 bytes stay zero). */
static inline void crypt_tweak(uint8_t iv[16], uint64_t lba)
{
	for (unsigned b = 0; b < 8; b++)
		iv[b] = (uint8_t)(lba >> (8 * b));
}

/* Runs @c over @n whole sectors from @in to @out (equal or disjoint), the
 * first at LBA @lba. Returns 0, or -EIO if OpenSSL fails. */
static int crypt_run(struct crypt_ctx *c, uint64_t lba, uint8_t *out, const uint8_t *in,
		     uint64_t n, uint32_t ss)
{
	uint8_t iv[16] = { 0 };

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	if (c->alg) {
		OSSL_FUNC_cipher_encrypt_init_fn *init = c->enc ? crypt_prov.einit : crypt_prov.dinit;

		for (uint64_t i = 0; i < n; i++, lba++, in += ss, out += ss) {
			size_t outl = 0;

			crypt_tweak(iv, lba);
			if (unlikely(init(c->alg, NULL, 0, iv, sizeof(iv), NULL) != 1 ||
				     crypt_prov.cipher_fn(c->alg, out, &outl, ss, in, ss) != 1 ||
				     outl != ss))
				return -EIO;
		}
		return 0;
	}
#endif
	for (uint64_t i = 0; i < n; i++, lba++, in += ss, out += ss) {
		int outl = 0;

		crypt_tweak(iv, lba);
		if (unlikely(EVP_CipherInit_ex(c->evp, NULL, NULL, NULL, iv, -1) != 1 ||
			     EVP_CipherUpdate(c->evp, out, &outl, in, (int)ss) != 1 ||
			     outl != (int)ss))
			return -EIO;
	}
	return 0;
}

/* The fused path's transform (struct disk_xform): the inner disk calls it
 * on its reactor's thread, the one that owns these contexts; xf_enc on a
 * write, xf_dec on a read. */
static int crypt_xform(const struct disk_xform *xf, void *dst, const void *src, size_t len,
		       uint64_t sector)
{
	struct crypt_pctx *pc = xf->ctx;
	struct crypt_ctx *c = xf == &pc->xf_enc ? &pc->enc : &pc->dec;

	assert(len > 0 && (len & (pc->ss - 1)) == 0);
	if (unlikely(crypt_run(c, sector, dst, src, len >> pc->shift, pc->ss) < 0)) {
		log_error("crypt: %scrypting %zu bytes at LBA %llu failed", c->enc ? "en" : "de",
			  len, (unsigned long long)sector);
		return -EIO;
	}
	return 0;
}

/* Moves @p forward by @len bytes. */
static void iov_pos_advance(const struct iovec *iov, int iovcnt, struct iov_pos *p, size_t len)
{
	while (len > 0 && p->i < iovcnt) {
		size_t left = iov[p->i].iov_len - p->off;

		if (len < left) {
			p->off += len;
			return;
		}
		len -= left;
		p->i++;
		p->off = 0;
	}
}

/* Skips to an entry with bytes left at @p. */
static inline void iov_pos_settle(const struct iovec *iov, int iovcnt, struct iov_pos *p)
{
	while (p->i < iovcnt && p->off >= iov[p->i].iov_len) {
		p->i++;
		p->off = 0;
	}
}

/* Decrypts @n sectors of @iov in place from @p, the first at LBA @lba. */
static int crypt_decrypt_iov(struct crypt_disk *cd, struct crypt_pctx *pc,
			     const struct iovec *iov, int iovcnt, struct iov_pos p,
			     uint64_t lba, uint64_t n)
{
	const uint32_t ss = cd->ss;

	while (n > 0) {
		size_t avail;
		uint8_t *base;

		iov_pos_settle(iov, iovcnt, &p);
		assert(p.i < iovcnt);
		avail = iov[p.i].iov_len - p.off;
		base = (uint8_t *)iov[p.i].iov_base + p.off;
		if (avail >= ss) {
			uint64_t k = MIN((uint64_t)(avail >> cd->shift), n);

			if (crypt_run(&pc->dec, lba, base, base, k, ss) < 0)
				return -EIO;
			p.off += k << cd->shift;
			lba += k;
			n -= k;
		} else {
			/* The sector straddles entries. */
			iov_to_buf(iov + p.i, iovcnt - p.i, p.off, pc->bounce, ss);
			if (crypt_run(&pc->dec, lba, pc->bounce, pc->bounce, 1, ss) < 0)
				return -EIO;
			iov_from_buf(iov + p.i, iovcnt - p.i, p.off, pc->bounce, ss);
			iov_pos_advance(iov, iovcnt, &p, ss);
			lba++;
			n--;
		}
	}
	return 0;
}

/* Encrypts @n sectors of @iov from *@p into @out, the first at LBA @lba;
 * advances *@p. */
static int crypt_encrypt_iov(struct crypt_disk *cd, struct crypt_pctx *pc,
			     const struct iovec *iov, int iovcnt, struct iov_pos *p,
			     uint64_t lba, uint64_t n, uint8_t *out)
{
	const uint32_t ss = cd->ss;

	while (n > 0) {
		size_t avail;
		const uint8_t *base;

		iov_pos_settle(iov, iovcnt, p);
		assert(p->i < iovcnt);
		avail = iov[p->i].iov_len - p->off;
		base = (const uint8_t *)iov[p->i].iov_base + p->off;
		if (avail >= ss) {
			uint64_t k = MIN((uint64_t)(avail >> cd->shift), n);

			if (crypt_run(&pc->enc, lba, out, base, k, ss) < 0)
				return -EIO;
			p->off += k << cd->shift;
			out += k << cd->shift;
			lba += k;
			n -= k;
		} else {
			/* The sector straddles entries: gather it, then
			 * encrypt it in place in the staging buffer. */
			iov_to_buf(iov + p->i, iovcnt - p->i, p->off, out, ss);
			if (crypt_run(&pc->enc, lba, out, out, 1, ss) < 0)
				return -EIO;
			iov_pos_advance(iov, iovcnt, p, ss);
			out += ss;
			lba++;
			n--;
		}
	}
	return 0;
}

/* Encrypts @n zero sectors into @out, the first at LBA @lba. */
static int crypt_encrypt_zeroes(struct crypt_disk *cd, struct crypt_pctx *pc, uint64_t lba,
				uint64_t n, uint8_t *out)
{
	for (uint64_t i = 0; i < n; i++, out += cd->ss)
		if (crypt_run(&pc->enc, lba + i, out, cd->zero_sector, 1, cd->ss) < 0)
			return -EIO;
	return 0;
}

/* ---- child requests ---------------------------------------------------------- */

/* Finishes @io with @child's result and releases @child. */
static void crypt_child_finish(struct disk_io *io, struct disk_io *child)
{
	int st = child->status;

	disk_io_copy_result(io, child);
	disk_io_put(io->reactor, child);
	disk_io_complete(io, st);
}

/*
 * Request state in io->hctx (the handling disk's scratch). The handling
 * disk is kept because io->disk is the disk the request was submitted to,
 * which may be a pass-through decorator above this one.
 */
enum {
	H_DISK = 0,     /* struct disk * of this crypt disk */
	H_NEXT,         /* writes: next LBA to encrypt */
	H_END,          /* writes: end LBA */
	H_BUF,          /* writes: staging buffer */
	H_IDX,          /* writes: iovec position (entry, byte) of H_NEXT */
	H_OFF,
};

static inline struct disk *crypt_hdisk(const struct disk_io *io)
{
	return (struct disk *)io->hctx[H_DISK];
}

/* ---- read ----------------------------------------------------------------------- */

static void crypt_read_done(struct disk_io *child)
{
	struct disk_io *io = child->opaque;
	struct crypt_disk *cd = crypt_of(crypt_hdisk(io));
	struct crypt_pctx *pc;
	struct iov_pos p = { 0, 0 };

	if (child->status != DISK_OK || io->count == 0) {
		crypt_child_finish(io, child);
		return;
	}
	disk_io_put(io->reactor, child);
	pc = crypt_pctx_get(cd, io->reactor);
	if (!pc || crypt_decrypt_iov(cd, pc, io->iov, io->iovcnt, p, io->sector, io->count) < 0) {
		log_error("crypt: decrypting %llu sectors at LBA %llu failed",
			  (unsigned long long)io->count, (unsigned long long)io->sector);
		disk_io_complete_errno(io, EIO);
		return;
	}
	disk_io_complete(io, DISK_OK);
}

static int crypt_fused(struct disk *d, struct disk_io *io);

static int crypt_read(struct disk *d, struct disk_io *io)
{
	struct disk_io *child;

	if (crypt_of(d)->fused && io->count > 0)
		return crypt_fused(d, io);
	child = disk_io_get_child(io, crypt_read_done);
	if (!child)
		return DISK_IO_ERROR;
	io->hctx[H_DISK] = (uintptr_t)d;
	child->op = DISK_OP_READ;
	child->sector = io->sector;
	child->iov = io->iov;
	child->iovcnt = io->iovcnt;
	disk_submit(disk_lower(d), child);
	return DISK_PENDING;
}

/* ---- the fused path ---------------------------------------------------------------- */

static void crypt_forward_done(struct disk_io *child);
static const struct disk_ops crypt_ops;

static inline void crypt_count(_Atomic uint64_t *c)
{
	/* Only the owner's thread stores: no read-modify-write needed. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* READ or WRITE of at least one sector, handed to the inner disk with the
 * cipher as its transform: it decrypts from its storage straight into the
 * caller's buffers, or encrypts from them straight into its storage. */
static int crypt_fused(struct disk *d, struct disk_io *io)
{
	struct crypt_pctx *pc = crypt_pctx_get(crypt_of(d), io->reactor);
	struct disk_io *child;

	if (!pc)
		return DISK_IO_ERROR;
	child = disk_io_get_child(io, crypt_forward_done);
	if (!child)
		return DISK_IO_ERROR;
	child->op = io->op;
	child->flags = io->flags & DISK_IO_FUA;
	child->sector = io->sector;
	child->iov = io->iov;
	child->iovcnt = io->iovcnt;
	if (io->op == DISK_OP_READ) {
		child->xform = &pc->xf_dec;
		crypt_count(&pc->fused_reads);
	} else {
		child->xform = &pc->xf_enc;
		crypt_count(&pc->fused_writes);
	}
	disk_submit(disk_lower(d), child);
	return DISK_PENDING;
}

void crypt_fused_counts(struct disk *d, uint64_t *reads, uint64_t *writes)
{
	struct crypt_disk *cd = crypt_of(d);
	uint64_t nr = 0, nw = 0;

	assert(disk_has_ops(d, &crypt_ops));
	for (struct crypt_pctx *pc = atomic_load(&cd->pctxs); pc; pc = pc->next) {
		nr += atomic_load_explicit(&pc->fused_reads, memory_order_relaxed);
		nw += atomic_load_explicit(&pc->fused_writes, memory_order_relaxed);
	}
	if (reads)
		*reads = nr;
	if (writes)
		*writes = nw;
}

/* ---- write and write-zeroes ------------------------------------------------------- */

static inline struct iovec *crypt_child_iov(struct disk_io *child)
{
	/* The child is ours: its submitter scratch holds its one iovec. */
	_Static_assert(sizeof(struct iovec) <= 2 * sizeof(uintptr_t), "iovec fits in sctx");
	return (struct iovec *)(void *)&child->sctx[4];
}

static inline size_t crypt_stage_bytes(const struct crypt_disk *cd, const struct disk_io *io)
{
	return (size_t)(MIN(io->count, cd->chunk_sectors) << cd->shift);
}

/* Encrypts the next chunk of @io into its staging buffer and points
 * @child at it. Returns 0 or -EIO. */
static int crypt_write_prepare(struct crypt_disk *cd, struct crypt_pctx *pc, struct disk_io *io,
			       struct disk_io *child)
{
	uint64_t next = io->hctx[H_NEXT];
	uint64_t n = MIN(io->hctx[H_END] - next, cd->chunk_sectors);
	uint8_t *buf = (uint8_t *)io->hctx[H_BUF];
	int r;

	if (io->op == DISK_OP_WRITE) {
		struct iov_pos p = { (int)io->hctx[H_IDX], (size_t)io->hctx[H_OFF] };

		r = crypt_encrypt_iov(cd, pc, io->iov, io->iovcnt, &p, next, n, buf);
		io->hctx[H_IDX] = (uintptr_t)p.i;
		io->hctx[H_OFF] = p.off;
	} else {
		r = crypt_encrypt_zeroes(cd, pc, next, n, buf);
	}
	if (r < 0) {
		log_error("crypt: encrypting %llu sectors at LBA %llu failed",
			  (unsigned long long)n, (unsigned long long)next);
		return r;
	}
	child->op = DISK_OP_WRITE;
	child->flags = io->flags & DISK_IO_FUA;
	child->sector = next;
	crypt_child_iov(child)->iov_base = buf;
	crypt_child_iov(child)->iov_len = (size_t)(n << cd->shift);
	child->iov = crypt_child_iov(child);
	child->iovcnt = 1;
	io->hctx[H_NEXT] = next + n;
	return 0;
}

static void crypt_write_finish(struct crypt_disk *cd, struct disk_io *io, struct disk_io *child)
{
	reactor_buf_put(io->reactor, (void *)io->hctx[H_BUF], crypt_stage_bytes(cd, io));
	crypt_child_finish(io, child);
}

static void crypt_write_done(struct disk_io *child)
{
	struct disk_io *io = child->opaque;
	struct crypt_disk *cd = crypt_of(crypt_hdisk(io));
	struct crypt_pctx *pc;

	if (child->status != DISK_OK || io->hctx[H_NEXT] >= io->hctx[H_END]) {
		crypt_write_finish(cd, io, child);
		return;
	}
	/* The staging buffer is free again: encrypt and write the next chunk. */
	pc = crypt_pctx_get(cd, io->reactor);
	if (!pc || crypt_write_prepare(cd, pc, io, child) < 0) {
		child->status = DISK_IO_ERROR;
		child->os_errno = EIO;
		crypt_write_finish(cd, io, child);
		return;
	}
	disk_submit(disk_lower(crypt_hdisk(io)), child);
}

/* WRITE and WRITE_ZEROES: encrypt into a staging buffer, write it below. */
static int crypt_write_start(struct disk *d, struct disk_io *io)
{
	struct crypt_disk *cd = crypt_of(d);
	struct crypt_pctx *pc;
	struct disk_io *child;
	void *buf;

	/* Zero sectors: nothing to write; the LBA must still be valid. A
	 * request in several chunks is checked up front, so that one past the
	 * end changes nothing (the inner disk checks each chunk again). */
	if (io->count == 0 || io->count > cd->chunk_sectors) {
		int st = disk_range_check_live(d, io->sector, io->count);

		if (st != DISK_OK || io->count == 0)
			return st;
	}
	pc = crypt_pctx_get(cd, io->reactor);
	if (!pc)
		return DISK_IO_ERROR;
	child = disk_io_get_staged(io, crypt_write_done, crypt_stage_bytes(cd, io), &buf);
	if (!child)
		return DISK_IO_ERROR;
	io->hctx[H_DISK] = (uintptr_t)d;
	io->hctx[H_NEXT] = io->sector;
	io->hctx[H_END] = io->sector + io->count;
	io->hctx[H_BUF] = (uintptr_t)buf;
	io->hctx[H_IDX] = 0;
	io->hctx[H_OFF] = 0;
	if (crypt_write_prepare(cd, pc, io, child) < 0) {
		reactor_buf_put(io->reactor, buf, crypt_stage_bytes(cd, io));
		disk_io_put(io->reactor, child);
		io->os_errno = EIO;
		return DISK_IO_ERROR;
	}
	disk_submit(disk_lower(d), child);
	return DISK_PENDING;
}

static int crypt_write(struct disk *d, struct disk_io *io)
{
	if (crypt_of(d)->fused && io->count > 0)
		return crypt_fused(d, io);
	return crypt_write_start(d, io);
}

static int crypt_write_zeroes(struct disk *d, struct disk_io *io)
{
	/* Zero plaintext is noise-like ciphertext: it has to be written,
	 * which is not fast, whatever the inner disk could do. */
	if (io->flags & DISK_IO_FAST_ZERO)
		return DISK_UNSUPPORTED;
	return crypt_write_start(d, io);
}

/* ---- the other ops -------------------------------------------------------------------- */

static void crypt_forward_done(struct disk_io *child)
{
	crypt_child_finish(child->opaque, child);
}

static int crypt_cache(struct disk *d, struct disk_io *io)
{
	struct disk_io *child = disk_io_get_child(io, crypt_forward_done);

	if (!child)
		return DISK_IO_ERROR;
	child->op = DISK_OP_CACHE;
	child->sector = io->sector;
	child->count = io->count;
	disk_submit(disk_lower(d), child);
	return DISK_PENDING;
}

static int crypt_eject(struct disk *d UNUSED, struct disk_io *io UNUSED)
{
	/* §5.4: not forwarded. */
	return DISK_UNSUPPORTED;
}

static void crypt_describe(struct disk *d, struct disk_describer *dd)
{
	struct crypt_disk *cd = crypt_of(d);

	disk_describe_paramf(dd, "cipher", "xts-aes-256");
	if (cd->key_name)
		disk_describe_paramf(dd, "key-file", "%s", cd->key_name);
	disk_describe_paramf(dd, "data-unit", "%u bytes (one sector)", cd->ss);
	disk_describe_paramf(dd, "tweak", "LBA, 128-bit little-endian");
	disk_describe_paramf(dd, "implementation", "%s",
			     cd->use_prov ? "OpenSSL provider" : "OpenSSL EVP");
	disk_describe_paramf(dd, "data-path", "%s",
			     cd->fused ? "fused (the inner disk applies the cipher)"
				       : "copy (cipher over the caller's buffer or a staging buffer)");
}

static void crypt_close(struct disk *d)
{
	struct crypt_disk *cd = crypt_of(d);
	struct crypt_pctx *pc, *next;

	/* No request is in flight, so no reactor is using a context. */
	for (pc = atomic_load(&cd->pctxs); pc; pc = next) {
		next = pc->next;
		crypt_pctx_free(pc);
	}
	crypt_secret_free(cd);
	free(cd->key_name);
	free(cd->zero_sector);
	free(cd);
}

static const struct disk_ops crypt_ops = {
	.version = DISK_OPS_VERSION,
	/* sector_count, flush, unmap (raw), pr, watch_resize and
	 * unwatch_resize pass through to the inner disk. */
	.read = crypt_read,
	.write = crypt_write,
	.write_zeroes = crypt_write_zeroes,
	/* Everything is data; see the notes at the top. */
	.block_status = disk_block_status_data,
	.cache = crypt_cache,
	.eject = crypt_eject,
	.describe = crypt_describe,
	.close = crypt_close,
};

/* ---- opening ---------------------------------------------------------------------------- */

int crypt_new(const uint8_t key[CRYPT_KEY_BYTES], const char *key_name, struct disk *lower,
	      struct disk **out, char *err, size_t errlen)
{
	struct crypt_disk *cd;
	struct crypt_pctx *probe;
	struct disk_info info;
	int r;

	*out = NULL;
	disk_info_inherit(&info, lower);
	/* The plaintext depends on the key: it is not the data of the file
	 * below, so a cache must not take the file's origin for it. */
	info.origin = NULL;
	if (CRYPTO_memcmp(key, key + CRYPT_KEY_BYTES / 2, CRYPT_KEY_BYTES / 2) == 0) {
		snprintf(err, errlen, "the data key and the tweak key (the two 32-byte halves of "
			 "the key) are identical; XTS needs two different keys");
		return -EINVAL;
	}
	if (info.sector_size > CRYPT_MAX_SECTOR) {
		snprintf(err, errlen, "sector size %u is larger than XTS allows (%u)",
			 info.sector_size, CRYPT_MAX_SECTOR);
		return -EINVAL;
	}
	cd = calloc(1, sizeof(*cd));
	if (!cd)
		goto nomem;
	cd->uid = atomic_fetch_add(&crypt_next_uid, 1);
	cd->ss = info.sector_size;
	cd->shift = info.sector_shift;
	cd->chunk_sectors = MAX((uint64_t)1, (uint64_t)(CRYPT_CHUNK_BYTES >> cd->shift));
	cd->zero_sector = calloc(1, cd->ss);
	if (key_name)
		cd->key_name = strdup(key_name);
	if (!cd->zero_sector || (key_name && !cd->key_name))
		goto nomem;
	/* The provider path unless told otherwise (for comparison and tests). */
	pthread_once(&crypt_prov_once, crypt_prov_init);
	cd->use_prov = crypt_prov.ok && !getenv("DISKSTACK_CRYPT_EVP");
	/* The fused path when the inner disk offers it, unless told
	 * otherwise (for comparison and tests). */
	cd->fused = (disk_get_info(lower)->caps & DISK_CAP_XFORM) &&
		    !getenv("DISKSTACK_CRYPT_NOFUSE");
	r = crypt_secret_new(cd, key);
	if (r < 0) {
		snprintf(err, errlen, "cannot allocate memory for the key: %s", strerror(-r));
		goto fail;
	}
	/* Try the key once now, so that OpenSSL's refusal is an open error. */
	probe = crypt_pctx_new(cd, NULL);
	if (!probe) {
		snprintf(err, errlen, "OpenSSL cannot set up xts-aes-256 with this key");
		r = -EIO;
		goto fail;
	}
	crypt_pctx_free(probe);

	info.type = "crypt";
	/* Zeroes below decrypt to noise (§5.1). */
	if (info.unmap_behavior == DISK_UNMAP_ZEROES)
		info.unmap_behavior = DISK_UNMAP_UNSPECIFIED;
	/* Write-zeroes writes; block status reports data; eject stops here. */
	info.caps &= ~(DISK_CAP_FAST_ZERO | DISK_CAP_BLOCK_STATUS | DISK_CAP_EJECT);
	r = disk_new(&crypt_ops, &info, cd, lower, out);
	if (r == 0)
		return 0;
	(void)errbuf_printf(err, errlen, "%s", strerror(-r));
	goto fail;

nomem:
	r = errbuf_fail(err, errlen, -ENOMEM, "out of memory");
fail:
	if (cd) {
		crypt_secret_free(cd);
		free(cd->key_name);
		free(cd->zero_sector);
		free(cd);
	}
	return r;
}

/* Wraps the lower disk with the key @arg (CRYPT_KEY_BYTES, borrowed). */
static int crypt_spec_wrap(const struct spec *s, struct disk *lower, void *arg,
			   struct disk **out, char *err, size_t errlen)
{
	return crypt_new(arg, s->path, lower, out, err, errlen);
}

/* The crypt: kind's open function: loads the key file named by @s->path
 * first (so a bad key opens nothing), then the inner spec with @read_only,
 * then wraps it. */
static int crypt_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			   struct disk **out, char *err, size_t errlen)
{
	uint8_t key[CRYPT_KEY_BYTES];
	int r;

	*out = NULL;
	if (!s->arg || strcmp(s->arg, "xts-aes-256") != 0) {
		snprintf(err, errlen, "unsupported cipher '%s' (valid: xts-aes-256)",
			 s->arg ? s->arg : "");
		return -EINVAL;
	}
	/* The key first: a bad key must not open (or create) anything. */
	r = crypt_key_load(s->path, key, err, errlen);
	if (r < 0)
		return r;
	r = spec_open_decorator(s, read_only, ctx, crypt_spec_wrap, key, out, err, errlen);
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}

static const char *const crypt_spec_ciphers[] = { "xts-aes-256", NULL };

const struct spec_kind crypt_kind_crypt = {
	.name = "crypt",
	.usage = "crypt:xts-aes-256:<keyfile>:<spec>",
	.summary = "XTS-AES-256 encryption of <spec>; <keyfile> holds 64 raw bytes",
	.open_disk = crypt_spec_open,
	.args = {
		{ .type = SPEC_ARG_WORD, .name = "cipher", .field = SPEC_FIELD(arg),
		  .words = crypt_spec_ciphers, .hint = "valid ciphers: xts-aes-256",
		  .missing_next = "missing ':<keyfile>:<spec>' after the cipher",
		  .missing_next_hint = "write crypt:xts-aes-256:<keyfile>:<spec>" },
		{ .type = SPEC_ARG_STRING, .name = "key file", .field = SPEC_FIELD(path),
		  .local_file = true,
		  .missing_hint = "write crypt:xts-aes-256:<keyfile>:<spec>",
		  .missing_next = "missing ':<spec>' after the key file",
		  .missing_next_hint = "write crypt:xts-aes-256:<keyfile>:<spec> "
				       "(the key file path cannot contain ':')" },
	},
	.nargs = 2,
	.tail = SPEC_TAIL_INNER,
};
