"""``make bench``: the project's build against common practice and the decode floor (never part of ``make test``)."""
