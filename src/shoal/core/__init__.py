"""Pure logic: no I/O, no clock, stdlib (plus pathspec) only."""
