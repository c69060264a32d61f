/*
 * spi_scan.c — SPI helpers: streaming reads (see spi_scan.h) and plans
 * prepared once and kept for the backend.
 *
 * SPI_execute_plan copies every result row into SPI_tuptable and callers
 * then fetch columns one SPI_getbinval at a time; on the recommendation
 * path (a thousand candidate rows per call) that copy and the repeated
 * deforming cost as much as the query.  Here a DestReceiver deforms each
 * row once and passes the slot straight to the caller.
 */
#include "postgres.h"

#include "tcop/dest.h"
#include "utils/memutils.h"

#include "spi_scan.h"

typedef struct SpiScanReceiver
{
	DestReceiver pub;
	SpiRowCallback callback;
	void	   *arg;
	MemoryContext cxt;			/* the caller's context at SpiScan */
	uint64		rows;
} SpiScanReceiver;

static bool
SpiScanReceive(TupleTableSlot *slot, DestReceiver *self)
{
	SpiScanReceiver *r = (SpiScanReceiver *) self;
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	slot_getallattrs(slot);
	r->callback(slot, r->arg);
	r->rows++;
	MemoryContextSwitchTo(old);
	return true;
}

static void
SpiScanStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
SpiScanShutdown(DestReceiver *self)
{
}

static void
SpiScanDestroy(DestReceiver *self)
{
}

uint64
SpiScan(SPIPlanPtr plan, Datum *args, bool read_only, SpiRowCallback callback, void *arg,
		const char *what)
{
	SpiScanReceiver r;
	SPIExecuteOptions options;
	ParamListInfo params = NULL;
	int			nargs = SPI_getargcount(plan);
	int			ret,
				i;

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = SpiScanReceive;
	r.pub.rStartup = SpiScanStartup;
	r.pub.rShutdown = SpiScanShutdown;
	r.pub.rDestroy = SpiScanDestroy;
	r.pub.mydest = DestNone;	/* rows go to the callback, not to SPI */
	r.callback = callback;
	r.arg = arg;
	r.cxt = CurrentMemoryContext;

	if (nargs > 0)
	{
		params = makeParamList(nargs);
		for (i = 0; i < nargs; i++)
		{
			params->params[i].value = args[i];
			params->params[i].isnull = false;
			params->params[i].pflags = PARAM_FLAG_CONST;
			params->params[i].ptype = SPI_getargtypeid(plan, i);
		}
	}
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = read_only;
	options.dest = &r.pub;

	ret = SPI_execute_plan_extended(plan, &options);
	/* a SELECT into a DestNone receiver reports SPI_OK_UTILITY */
	if (ret < 0)
		elog(ERROR, "reading %s failed: %s", what, SPI_result_code_string(ret));
	return r.rows;
}

/* Prepare a plan (with SPI cursor options, 0 for none) and keep it. */
SPIPlanPtr
SpiKeepPlan(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}
