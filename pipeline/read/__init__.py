"""Reading a finished store: the store object, annotation queries, regions, xarray, torch,
preview. Uses ``celebamask.store``; the build is never imported from here."""
