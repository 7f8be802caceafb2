"""`mcnn-ttt`: time-to-train experiments over a grid of configurations.

`experiment` (the grid, one `mcnn-train` process per configuration, how
each run ended), `report` (the Table 1-style `ttt.md`/`ttt.csv` and the Fig. 7
and Fig. 9 PNGs). Imports the floors below (train's config and run directory).
"""
