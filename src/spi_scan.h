/*
 * spi_scan.h — SPI helpers: run a prepared plan and hand each result row
 * to a callback as it is produced, without materialising SPI_tuptable;
 * prepare a plan and keep it.
 */
#ifndef ICPML_SPI_SCAN_H
#define ICPML_SPI_SCAN_H

#include "executor/spi.h"
#include "executor/tuptable.h"

/*
 * Called once per row with every attribute deformed (slot->tts_values,
 * slot->tts_isnull), in the memory context that was current when the scan
 * started.  Pass-by-reference values point into the row and are valid only
 * during the call: copy what you keep.
 */
typedef void (*SpiRowCallback) (TupleTableSlot *slot, void *arg);

/*
 * Execute plan (a SELECT, or DML with RETURNING) with args and return the
 * number of rows; `what` names the data for the error message.
 */
extern uint64 SpiScan(SPIPlanPtr plan, Datum *args, bool read_only,
					  SpiRowCallback callback, void *arg, const char *what);

/* Prepare a plan (with SPI cursor options, 0 for none) and keep it. */
extern SPIPlanPtr SpiKeepPlan(const char *sql, int nargs, Oid *argtypes, int cursor_options);

#endif							/* ICPML_SPI_SCAN_H */
