# src/: the trainer core (no networking).
noinst_LIBRARIES += libswcore.a
libswcore_a_SOURCES = src/sw.h src/err.h src/err.c src/log.h src/log.c src/alloc.h src/alloc.c
