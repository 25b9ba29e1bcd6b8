"""A run of ``embedsdg run``: its run dir (every path in it, the saved config read back) and its stages (which
settings each reads, what each saves). ``pipeline.py`` is the loop over them."""
