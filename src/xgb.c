/*
 * xgb.c — the only file that talks to XGBoost (see xgb.h for the contract).
 *
 * libxgboost is not linked into icpml.so: it is opened (dlopen) by the
 * first call that needs it, and its C API resolved then.  Scoring with the
 * native evaluator (tree.c) never needs it, so a backend that only scores
 * neither pays for loading the C++ library and its dependencies (a few
 * milliseconds with RTLD_NOW) nor starts OpenMP's worker threads.  The
 * library is found like a linked one: icpml.so's RUNPATH (the portable
 * tarball's icpml-runtime/), LD_LIBRARY_PATH, the system's directories.
 *
 * No XGBoost call happens in the postmaster (see icpml.c): the first call
 * in a backend loads the library and sets its global verbosity.
 */
#include "postgres.h"

#include <ctype.h>
#include <dlfcn.h>
#include <math.h>
#include <signal.h>
#include <xgboost/c_api.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "xgb.h"

/* libxgboost's file name (its soname; the Makefile passes the one it found) */
#ifndef ICPML_XGBOOST_LIBRARY
#define ICPML_XGBOOST_LIBRARY "libxgboost.so.0"
#endif

/* Every C API function icpml calls, resolved on first use. */
#define XGB_API(X) \
	X(XGBGetLastError) \
	X(XGBSetGlobalConfig) \
	X(XGBoostVersion) \
	X(XGDMatrixCreateFromMat) \
	X(XGDMatrixSetFloatInfo) \
	X(XGDMatrixSetStrFeatureInfo) \
	X(XGDMatrixFree) \
	X(XGBoosterCreate) \
	X(XGBoosterLoadModelFromBuffer) \
	X(XGBoosterSetParam) \
	X(XGBoosterUpdateOneIter) \
	X(XGBoosterBoostedRounds) \
	X(XGBoosterGetNumFeature) \
	X(XGBoosterSetAttr) \
	X(XGBoosterGetAttr) \
	X(XGBoosterGetStrFeatureInfo) \
	X(XGBoosterSaveModelToBuffer) \
	X(XGBoosterPredictFromDMatrix) \
	X(XGBoosterPredictFromDense) \
	X(XGBoosterFeatureScore) \
	X(XGBoosterFree)

#define XGB_API_POINTER(name) __typeof__(name) *p_##name;
static struct
{
	XGB_API(XGB_API_POINTER)
} xgb_api;

/* from here on, every call goes through the resolved pointers */
#define XGBGetLastError xgb_api.p_XGBGetLastError
#define XGBSetGlobalConfig xgb_api.p_XGBSetGlobalConfig
#define XGBoostVersion xgb_api.p_XGBoostVersion
#define XGDMatrixCreateFromMat xgb_api.p_XGDMatrixCreateFromMat
#define XGDMatrixSetFloatInfo xgb_api.p_XGDMatrixSetFloatInfo
#define XGDMatrixSetStrFeatureInfo xgb_api.p_XGDMatrixSetStrFeatureInfo
#define XGDMatrixFree xgb_api.p_XGDMatrixFree
#define XGBoosterCreate xgb_api.p_XGBoosterCreate
#define XGBoosterLoadModelFromBuffer xgb_api.p_XGBoosterLoadModelFromBuffer
#define XGBoosterSetParam xgb_api.p_XGBoosterSetParam
#define XGBoosterUpdateOneIter xgb_api.p_XGBoosterUpdateOneIter
#define XGBoosterBoostedRounds xgb_api.p_XGBoosterBoostedRounds
#define XGBoosterGetNumFeature xgb_api.p_XGBoosterGetNumFeature
#define XGBoosterSetAttr xgb_api.p_XGBoosterSetAttr
#define XGBoosterGetAttr xgb_api.p_XGBoosterGetAttr
#define XGBoosterGetStrFeatureInfo xgb_api.p_XGBoosterGetStrFeatureInfo
#define XGBoosterSaveModelToBuffer xgb_api.p_XGBoosterSaveModelToBuffer
#define XGBoosterPredictFromDMatrix xgb_api.p_XGBoosterPredictFromDMatrix
#define XGBoosterPredictFromDense xgb_api.p_XGBoosterPredictFromDense
#define XGBoosterFeatureScore xgb_api.p_XGBoosterFeatureScore
#define XGBoosterFree xgb_api.p_XGBoosterFree

/* Check an XGBoost C API return code; ERROR with the library's message. */
#define XGB_CHECK(call) \
	do { \
		if ((call) != 0) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("XGBoost call failed: %s", XgbErrorFirstLine()), \
					 errcontext("%s", #call))); \
	} while (0)

/*
 * Run an XGBoost call that may start OpenMP threads with all blockable
 * signals blocked: threads inherit the mask, so SIGINT/SIGALRM keep going
 * to the main thread.  The return code is checked after the mask is back.
 */
#define XGB_CHECK_THREADED(call) \
	do { \
		sigset_t	xgb_all_, xgb_old_; \
		int			xgb_rc_; \
		sigfillset(&xgb_all_); \
		pthread_sigmask(SIG_BLOCK, &xgb_all_, &xgb_old_); \
		xgb_rc_ = (call); \
		pthread_sigmask(SIG_SETMASK, &xgb_old_, NULL); \
		if (xgb_rc_ != 0) \
			ereport(ERROR, \
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION), \
					 errmsg("XGBoost call failed: %s", XgbErrorFirstLine()), \
					 errcontext("%s", #call))); \
	} while (0)

static char *XgbErrorFirstLine(void);

struct XgbBooster
{
	BoosterHandle handle;
	MemoryContextCallback cb;
};

struct XgbMatrix
{
	DMatrixHandle handle;
	int64		nrow;
	int			ncol;
	MemoryContextCallback cb;
};

PG_FUNCTION_INFO_V1(xgboost_version);

/*
 * First XGBoost use in this backend (never in the postmaster): open the
 * library, resolve its C API, quiet its logging.  A missing library is an
 * ERROR that says what to install; nothing is kept of a failed attempt.
 */
static void
XgbInit(void)
{
	static bool done = false;
	void	   *lib;

	if (done)
		return;
	lib = dlopen(ICPML_XGBOOST_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("could not load the XGBoost library: %s", dlerror()),
				 errhint("Install libxgboost (Debian: apt-get install libxgboost0), or the portable tarball's icpml-runtime directory beside icpml.so. Scoring a deployed model does not need it; training, explain_icp_score and verify_model do.")));
#define XGB_API_RESOLVE(name) \
	if ((xgb_api.p_##name = (__typeof__(xgb_api.p_##name)) dlsym(lib, #name)) == NULL) \
	{ \
		memset(&xgb_api, 0, sizeof(xgb_api)); \
		ereport(ERROR, \
				(errcode(ERRCODE_UNDEFINED_FUNCTION), \
				 errmsg("the XGBoost library %s lacks %s", ICPML_XGBOOST_LIBRARY, #name), \
				 errhint("icpml needs XGBoost 1.7's C API."))); \
	}
	XGB_API(XGB_API_RESOLVE)
#undef XGB_API_RESOLVE
	done = true;
	XGB_CHECK(XGBSetGlobalConfig("{\"verbosity\": 0}"));
}

/* Runtime XGBoost version as "major.minor.patch". */
char *
XgbVersionString(void)
{
	int			major,
				minor,
				patch;

	XgbInit();
	XGBoostVersion(&major, &minor, &patch);
	return psprintf("%d.%d.%d", major, minor, patch);
}

/* icpml.xgboost_version() → text: proves the link to libxgboost. */
Datum
xgboost_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(XgbVersionString()));
}

/*
 * XGBoost's last error reduced to its first line without the
 * "[hh:mm:ss] file:line: " prefix (the rest is a stack trace), so messages
 * are stable and readable.
 */
static char *
XgbErrorFirstLine(void)
{
	const char *msg = XGBGetLastError();
	const char *start = msg;
	const char *p;
	size_t		n;

	if (msg[0] == '[' && (p = strchr(msg, ']')) != NULL)
	{
		/* skip "[time] file:line: " */
		const char *colon = strstr(p, ": ");

		start = colon ? colon + 2 : p + 1;
	}
	while (*start == ' ')
		start++;
	n = strcspn(start, "\n");
	return pnstrdup(start, n);
}

/* Memory-context callbacks: free the handle with its owning context. */
static void
XgbMatrixRelease(void *arg)
{
	XgbMatrix  *m = (XgbMatrix *) arg;

	if (m->handle)
		XGDMatrixFree(m->handle);
	m->handle = NULL;
}

static void
XgbBoosterRelease(void *arg)
{
	XgbBooster *b = (XgbBooster *) arg;

	if (b->handle)
		XGBoosterFree(b->handle);
	b->handle = NULL;
}

/* Wrap a fresh DMatrix handle so its context owns it. */
static XgbMatrix *
XgbMatrixWrap(DMatrixHandle h, int64 nrow, int ncol)
{
	XgbMatrix  *m = palloc0(sizeof(XgbMatrix));

	m->handle = h;
	m->nrow = nrow;
	m->ncol = ncol;
	m->cb.func = XgbMatrixRelease;
	m->cb.arg = m;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &m->cb);
	return m;
}

/* Wrap a fresh Booster handle so its context owns it. */
static XgbBooster *
XgbBoosterWrap(BoosterHandle h)
{
	XgbBooster *b = palloc0(sizeof(XgbBooster));

	b->handle = h;
	b->cb.func = XgbBoosterRelease;
	b->cb.arg = b;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &b->cb);
	return b;
}

XgbMatrix *
XgbMatrixFromDense(const float *data, int64 nrow, int ncol, float missing)
{
	DMatrixHandle h = NULL;
	XgbMatrix  *m;

	XgbInit();
	/* allocate the wrapper first: a palloc failure must not leak the handle */
	m = XgbMatrixWrap(NULL, nrow, ncol);
	XGB_CHECK(XGDMatrixCreateFromMat(data, (bst_ulong) nrow, (bst_ulong) ncol, missing, &h));
	m->handle = h;
	return m;
}

void
XgbMatrixSetLabels(XgbMatrix *m, const float *labels, int64 n)
{
	XGB_CHECK(XGDMatrixSetFloatInfo(m->handle, "label", labels, (bst_ulong) n));
}

void
XgbMatrixSetWeights(XgbMatrix *m, const float *weights, int64 n)
{
	XGB_CHECK(XGDMatrixSetFloatInfo(m->handle, "weight", weights, (bst_ulong) n));
}

void
XgbMatrixSetFeatureTypes(XgbMatrix *m, const char **types, int ncol)
{
	XGB_CHECK(XGDMatrixSetStrFeatureInfo(m->handle, "feature_type", types, (bst_ulong) ncol));
}

void
XgbMatrixSetFeatureNames(XgbMatrix *m, const char **names, int ncol)
{
	XGB_CHECK(XGDMatrixSetStrFeatureInfo(m->handle, "feature_name", names, (bst_ulong) ncol));
}

void
XgbMatrixFree(XgbMatrix *m)
{
	XgbMatrixRelease(m);
}

XgbBooster *
XgbBoosterCreate(XgbMatrix **cache, int ncache)
{
	DMatrixHandle *hs = palloc(sizeof(DMatrixHandle) * Max(ncache, 1));
	BoosterHandle h = NULL;
	XgbBooster *b;
	int			i;

	XgbInit();
	for (i = 0; i < ncache; i++)
		hs[i] = cache[i]->handle;
	b = XgbBoosterWrap(NULL);
	XGB_CHECK(XGBoosterCreate(hs, (bst_ulong) ncache, &h));
	b->handle = h;
	pfree(hs);
	return b;
}

/*
 * Checking a model blob before XGBoost parses it.  XGBoost 1.7's UBJSON
 * reader does not check lengths against the buffer (a truncated blob makes it
 * read past the end; a declared length or count can send it anywhere), and
 * its readers recurse without a depth limit.  Models are stored by
 * administrators, who are not superusers: a blob must not crash or misread
 * the backend that loads it.  So a blob is accepted only as JSON text or
 * UBJSON (what XGBoost writes and icpml stores; XGBoost's deprecated binary
 * format is refused) whose structure fits in the buffer and nests at most
 * XGB_BLOB_MAX_DEPTH deep.  What the structure says is XGBoost's to check.
 */
#define XGB_BLOB_MAX_DEPTH 32

typedef struct XgbBlobCursor
{
	const unsigned char *buf;
	size_t		len;
	size_t		pos;
	const char *problem;		/* set on the first problem found */
} XgbBlobCursor;

/* Is there room for n more bytes? */
static inline bool
XgbBlobHas(XgbBlobCursor *c, size_t n)
{
	if (c->problem == NULL && n <= c->len - c->pos)
		return true;
	if (c->problem == NULL)
		c->problem = "it ends in the middle of a value";
	return false;
}

/* A big-endian int64 (UBJSON 'L'); -1 when it does not fit or is negative. */
static int64
XgbBlobInt64(XgbBlobCursor *c)
{
	uint64		v = 0;
	int			i;

	if (!XgbBlobHas(c, 8))
		return -1;
	for (i = 0; i < 8; i++)
		v = (v << 8) | c->buf[c->pos++];
	if (v > (uint64) PG_INT64_MAX)
	{
		c->problem = "a length is negative";
		return -1;
	}
	return (int64) v;
}

/* A UBJSON string body as XGBoost reads it: 'L', an int64 length, the bytes. */
static void
XgbBlobString(XgbBlobCursor *c)
{
	int64		n;

	if (!XgbBlobHas(c, 1))
		return;
	if (c->buf[c->pos++] != 'L')
	{
		c->problem = "a string length is not an int64";
		return;
	}
	n = XgbBlobInt64(c);
	if (n >= 0 && XgbBlobHas(c, (size_t) n))
		c->pos += (size_t) n;
}

/* One UBJSON value, the grammar of XGBoost's UBJReader, bounds-checked. */
static void
XgbBlobUbjValue(XgbBlobCursor *c, int depth)
{
	unsigned char m;

	if (depth > XGB_BLOB_MAX_DEPTH)
	{
		c->problem = "it nests too deep";
		return;
	}
	if (!XgbBlobHas(c, 1))
		return;
	m = c->buf[c->pos++];
	switch (m)
	{
		case '{':
			while (c->problem == NULL && XgbBlobHas(c, 1) && c->buf[c->pos] != '}')
			{
				XgbBlobString(c);	/* the key */
				XgbBlobUbjValue(c, depth + 1);
			}
			if (c->problem == NULL)
				c->pos++;		/* '}' */
			break;
		case '[':
			if (!XgbBlobHas(c, 1))
				break;
			if (c->buf[c->pos] == '$')
			{
				/* typed array: $ type # L count, then count raw elements */
				unsigned char type;
				size_t		size;
				int64		n;

				if (!XgbBlobHas(c, 4))
					break;
				type = c->buf[c->pos + 1];
				if (c->buf[c->pos + 2] != '#' || c->buf[c->pos + 3] != 'L')
				{
					c->problem = "a typed array has no int64 count";
					break;
				}
				c->pos += 4;
				size = type == 'd' || type == 'l' ? 4 : type == 'L' ? 8 : type == 'U' ? 1 : 0;
				if (size == 0)
				{
					c->problem = "a typed array has an unknown element type";
					break;
				}
				n = XgbBlobInt64(c);
				if (n >= 0 && (uint64) n <= (c->len - c->pos) / size)
					c->pos += (size_t) n * size;
				else if (c->problem == NULL)
					c->problem = "a typed array is longer than the blob";
			}
			else if (c->buf[c->pos] == '#')
			{
				int64		n,
							i;

				c->pos++;
				if (!XgbBlobHas(c, 1) || c->buf[c->pos++] != 'L')
				{
					if (c->problem == NULL)
						c->problem = "an array has no int64 count";
					break;
				}
				n = XgbBlobInt64(c);
				/* every element takes at least one byte */
				if (n < 0 || (uint64) n > c->len - c->pos)
				{
					if (c->problem == NULL)
						c->problem = "an array is longer than the blob";
					break;
				}
				for (i = 0; i < n && c->problem == NULL; i++)
					XgbBlobUbjValue(c, depth + 1);
			}
			else
			{
				while (c->problem == NULL && XgbBlobHas(c, 1) && c->buf[c->pos] != ']')
					XgbBlobUbjValue(c, depth + 1);
				if (c->problem == NULL)
					c->pos++;	/* ']' */
			}
			break;
		case 'Z':
		case 'T':
		case 'F':
			break;
		case 'i':
		case 'U':
		case 'C':
			if (XgbBlobHas(c, 1))
				c->pos += 1;
			break;
		case 'I':
			if (XgbBlobHas(c, 2))
				c->pos += 2;
			break;
		case 'l':
		case 'd':
			if (XgbBlobHas(c, 4))
				c->pos += 4;
			break;
		case 'L':
			if (XgbBlobHas(c, 8))
				c->pos += 8;
			break;
		case 'S':
			XgbBlobString(c);
			break;
		default:
			c->problem = "it holds a value XGBoost's UBJSON reader does not know";
			break;
	}
}

/*
 * JSON text: XGBoost's reader checks its bounds, but recurses once per
 * nesting level; count the nesting outside strings.
 */
static void
XgbBlobJsonDepth(XgbBlobCursor *c)
{
	int			depth = 0;
	bool		in_string = false;

	for (c->pos = 0; c->pos < c->len; c->pos++)
	{
		unsigned char ch = c->buf[c->pos];

		if (in_string)
		{
			if (ch == '\\')
				c->pos++;
			else if (ch == '"')
				in_string = false;
		}
		else if (ch == '"')
			in_string = true;
		else if (ch == '{' || ch == '[')
		{
			if (++depth > XGB_BLOB_MAX_DEPTH)
			{
				c->problem = "it nests too deep";
				return;
			}
		}
		else if (ch == '}' || ch == ']')
			depth--;
	}
}

/* ERROR unless buf is JSON text or UBJSON that is safe to hand to XGBoost. */
static void
XgbBlobCheck(const char *buf, size_t len)
{
	XgbBlobCursor c = {(const unsigned char *) buf, len, 0, NULL};
	size_t		i = 1;

	/* the format, as XGBoost's LearnerIO::LoadModel tells them apart */
	while (i < len && isspace((unsigned char) buf[i]))
		i++;
	if (len < 2 || buf[0] != '{' || i == len)
		c.problem = "it is neither XGBoost's JSON nor its UBJSON";
	else if (buf[i] == '"')
		XgbBlobJsonDepth(&c);
	else if (isalpha((unsigned char) buf[i]))
		XgbBlobUbjValue(&c, 0);
	else
		c.problem = "it is neither XGBoost's JSON nor its UBJSON";

	if (c.problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored XGBoost model cannot be loaded"),
				 errdetail("The blob is not a well-formed XGBoost model: %s.", c.problem),
				 errhint("The model blob is corrupt or from an incompatible XGBoost; delete the version or deploy another one.")));
}

XgbBooster *
XgbBoosterLoad(const char *buf, size_t len)
{
	XgbBooster *b;

	XgbBlobCheck(buf, len);
	b = XgbBoosterCreate(NULL, 0);
	if (XGBoosterLoadModelFromBuffer(b->handle, buf, (bst_ulong) len) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored XGBoost model cannot be loaded"),
				 errdetail("XGBoost: %s", XgbErrorFirstLine()),
				 errhint("The model blob is corrupt or from an incompatible XGBoost; delete the version or deploy another one.")));
	return b;
}

void
XgbBoosterSetParam(XgbBooster *b, const char *name, const char *value)
{
	XGB_CHECK(XGBoosterSetParam(b->handle, name, value));
}

void
XgbBoosterUpdateOneIter(XgbBooster *b, int iter, XgbMatrix *dtrain)
{
	XGB_CHECK_THREADED(XGBoosterUpdateOneIter(b->handle, iter, dtrain->handle));
}

int
XgbBoosterBoostedRounds(XgbBooster *b)
{
	int			n = 0;

	XGB_CHECK(XGBoosterBoostedRounds(b->handle, &n));
	return n;
}

int
XgbBoosterNumFeatures(XgbBooster *b)
{
	bst_ulong	n = 0;

	XGB_CHECK(XGBoosterGetNumFeature(b->handle, &n));
	return (int) n;
}

/* Set a string attribute, saved with the model. */
void
XgbBoosterSetAttr(XgbBooster *b, const char *key, const char *value)
{
	XGB_CHECK(XGBoosterSetAttr(b->handle, key, value));
}

/* A string attribute saved with the model (palloc'd copy), NULL when absent. */
char *
XgbBoosterGetAttr(XgbBooster *b, const char *key)
{
	const char *out = NULL;
	int			success = 0;

	XGB_CHECK(XGBoosterGetAttr(b->handle, key, &out, &success));
	return success && out != NULL ? pstrdup(out) : NULL;
}

/* The feature types saved with the model (palloc'd copies); *n = 0 when none. */
char **
XgbBoosterFeatureTypes(XgbBooster *b, int *n)
{
	bst_ulong	len = 0;
	const char **types = NULL;
	char	  **copy;
	bst_ulong	i;

	XGB_CHECK(XGBoosterGetStrFeatureInfo(b->handle, "feature_type", &len, &types));
	copy = palloc(sizeof(char *) * Max(len, 1));
	for (i = 0; i < len; i++)
		copy[i] = pstrdup(types[i]);
	*n = (int) len;
	return copy;
}

char *
XgbBoosterSave(XgbBooster *b, const char *format, size_t *len)
{
	bst_ulong	n = 0;
	const char *out = NULL;
	char	   *copy;
	char		config[64];

	snprintf(config, sizeof(config), "{\"format\": \"%s\"}", format);
	XGB_CHECK(XGBoosterSaveModelToBuffer(b->handle, config, &n, &out));
	copy = palloc(n + 1);
	memcpy(copy, out, n);
	copy[n] = '\0';
	*len = n;
	return copy;
}

/* Copy a prediction result of the given shape before the next call. */
static float *
XgbCopyResult(const bst_ulong *shape, bst_ulong dim, const float *result, uint64 *len)
{
	uint64		n = 1;
	bst_ulong	i;
	float	   *copy;

	for (i = 0; i < dim; i++)
		n *= shape[i];
	copy = palloc(sizeof(float) * Max(n, 1));
	memcpy(copy, result, sizeof(float) * n);
	*len = n;
	return copy;
}

float *
XgbBoosterPredict(XgbBooster *b, XgbMatrix *m, int kind, uint64 *len)
{
	const bst_ulong *shape = NULL;
	bst_ulong	dim = 0;
	const float *result = NULL;
	char		config[160];

	snprintf(config, sizeof(config),
			 "{\"type\": %d, \"training\": false, \"iteration_begin\": 0, "
			 "\"iteration_end\": 0, \"strict_shape\": false}", kind);
	XGB_CHECK_THREADED(XGBoosterPredictFromDMatrix(b->handle, m->handle, config,
												   &shape, &dim, &result));
	return XgbCopyResult(shape, dim, result, len);
}

float *
XgbBoosterPredictDense(XgbBooster *b, const float *data, int64 nrow, int ncol,
					   int kind, uint64 *len)
{
	const bst_ulong *shape = NULL;
	bst_ulong	dim = 0;
	const float *result = NULL;
	char		array[256];
	char		config[200];

	/*
	 * XGBoost 1.7's in-place predict only does values and margins ("Unsupported
	 * prediction type" otherwise): contributions go through a DMatrix, which
	 * the memory context frees on error.  (tree.c helper, T4.)
	 */
	if (kind != XGB_PREDICT_VALUE && kind != XGB_PREDICT_MARGIN)
	{
		XgbMatrix  *m = XgbMatrixFromDense(data, nrow, ncol, (float) NAN);
		float	   *out = XgbBoosterPredict(b, m, kind, len);

		XgbMatrixFree(m);
		return out;
	}

	snprintf(array, sizeof(array),
			 "{\"data\": [%lu, true], \"shape\": [" INT64_FORMAT ", %d], "
			 "\"typestr\": \"<f4\", \"version\": 3}",
			 (unsigned long) (uintptr_t) data, nrow, ncol);
	snprintf(config, sizeof(config),
			 "{\"type\": %d, \"training\": false, \"iteration_begin\": 0, "
			 "\"iteration_end\": 0, \"strict_shape\": false, \"missing\": NaN, "
			 "\"cache_id\": 0}", kind);
	XGB_CHECK_THREADED(XGBoosterPredictFromDense(b->handle, array, config, NULL,
												 &shape, &dim, &result));
	return XgbCopyResult(shape, dim, result, len);
}

int
XgbBoosterFeatureScore(XgbBooster *b, const char *importance_type,
					   char ***names, float **scores)
{
	bst_ulong	nfeat = 0,
				dim = 0;
	const char **fnames = NULL;
	const bst_ulong *shape = NULL;
	const float *fscores = NULL;
	char		config[96];
	bst_ulong	i;

	snprintf(config, sizeof(config), "{\"importance_type\": \"%s\"}", importance_type);
	XGB_CHECK(XGBoosterFeatureScore(b->handle, config, &nfeat, &fnames, &dim, &shape, &fscores));
	*names = palloc(sizeof(char *) * Max(nfeat, 1));
	*scores = palloc(sizeof(float) * Max(nfeat, 1));
	for (i = 0; i < nfeat; i++)
	{
		(*names)[i] = pstrdup(fnames[i]);
		(*scores)[i] = fscores[i];
	}
	return (int) nfeat;
}

void
XgbBoosterFree(XgbBooster *b)
{
	XgbBoosterRelease(b);
}
