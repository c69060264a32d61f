/*
 * catalog.h — icpml's own tables (catalog.c): their oids, the switch to the
 * extension owner (with search_path pinned) for reading and writing them,
 * plans prepared that way, who is an administrator, and the invalidation
 * of the backend caches built from them.
 */
#ifndef ICPML_CATALOG_H
#define ICPML_CATALOG_H

#include "postgres.h"

#include "executor/spi.h"

extern Oid	CatalogExtensionOwner(void);
extern Oid	CatalogRelid(const char *relname);
extern Oid	CatalogRelidIfExists(const char *relname);

/* What CatalogSwitchToOwner saved: the caller's role and search_path level. */
typedef struct CatalogOwnerState
{
	Oid			saveUserId;
	int			saveSecContext;
	int			gucNestLevel;	/* 0: the search_path was pinned already */
} CatalogOwnerState;

extern void CatalogSwitchToOwner(CatalogOwnerState *save);
extern void CatalogRestoreUser(const CatalogOwnerState *save);
extern SPIPlanPtr CatalogKeepPlan(const char *sql, int nargs, Oid *argtypes,
								  int cursor_options);
extern bool CatalogIsAdministrator(Oid roleid);
typedef void (*CatalogInvalidateHook) (void);
extern void CatalogRegisterInvalidation(CatalogInvalidateHook hook);
extern bool CatalogLoadFresh(CatalogInvalidateHook load);

#endif							/* ICPML_CATALOG_H */
