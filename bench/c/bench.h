/*
 * Shared pieces of the C benchmark programs: a monotonic clock, sample buffers, and the line
 * protocol they speak with the bench/ TypeScript code. Each program reads one command per line on stdin (fields
 * separated by TAB), runs it, and answers with one line of JSON on stdout:
 *   {"ok":true,"ns":[...]}                     one timing per iteration, in nanoseconds
 *   {"ok":true,"phases":{"create":[...],...}}  several timings per iteration
 *   {"ok":false,"error":"..."}
 * The command "quit" (or end of input) ends the program.
 */
#ifndef BENCH_H
#define BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FIELDS 64

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct {
	uint64_t *v;
	size_t n, cap;
} samples_t;

static __attribute__((unused)) void samples_init(samples_t *s, size_t cap)
{
	s->n = 0;
	s->cap = cap ? cap : 16;
	s->v = malloc(s->cap * sizeof *s->v);
	if (!s->v) abort();
}

static __attribute__((unused)) void samples_push(samples_t *s, uint64_t x)
{
	if (s->n == s->cap) {
		s->cap *= 2;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (!s->v) abort();
	}
	s->v[s->n++] = x;
}

static __attribute__((unused)) void samples_free(samples_t *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static __attribute__((unused)) void print_array(const samples_t *s)
{
	putchar('[');
	for (size_t i = 0; i < s->n; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)s->v[i]);
	putchar(']');
}

/** {"ok":true,"ns":[...]} */
static __attribute__((unused)) void reply_samples(const samples_t *s)
{
	fputs("{\"ok\":true,\"ns\":", stdout);
	print_array(s);
	fputs("}\n", stdout);
	fflush(stdout);
}

/** {"ok":true,"phases":{"name":[...],...}} */
static __attribute__((unused)) void reply_phases(const char *const *names, const samples_t *phases, int count)
{
	fputs("{\"ok\":true,\"phases\":{", stdout);
	for (int i = 0; i < count; i++) {
		printf(i ? ",\"%s\":" : "\"%s\":", names[i]);
		print_array(&phases[i]);
	}
	fputs("}}\n", stdout);
	fflush(stdout);
}

static char last_error[1024];

/** Records why the current command failed; returns -1 so callers can `return fail(...)`. */
static __attribute__((unused)) int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return -1;
}

static __attribute__((unused)) void reply_error(void)
{
	fputs("{\"ok\":false,\"error\":\"", stdout);
	for (const char *p = last_error; *p; p++) {
		if (*p == '"' || *p == '\\') putchar('\\');
		putchar((unsigned char)*p < 0x20 ? ' ' : *p);
	}
	fputs("\"}\n", stdout);
	fflush(stdout);
	last_error[0] = '\0';
}

/** Splits `line` in place on TABs (the trailing newline removed). */
static __attribute__((unused)) int split_fields(char *line, char **fields)
{
	int n = 0;
	size_t len = strlen(line);
	if (len && line[len - 1] == '\n') line[--len] = '\0';
	char *p = line;
	while (n < MAX_FIELDS) {
		fields[n++] = p;
		char *tab = strchr(p, '\t');
		if (!tab) break;
		*tab = '\0';
		p = tab + 1;
	}
	return n;
}

static __attribute__((unused)) long long num(const char *s)
{
	return strtoll(s, NULL, 0);
}

/** One operation of a timed loop; negative on failure (with fail() called). */
typedef int (*op_fn)(char **args);

/** Runs fn n times, timing each call, and replies with the samples (or the first error). */
static __attribute__((unused)) int timed(long long n, op_fn fn, char **args)
{
	samples_t s;
	samples_init(&s, (size_t)n);
	for (long long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		if (fn(args) < 0) {
			samples_free(&s);
			return -1;
		}
		samples_push(&s, now_ns() - t0);
	}
	reply_samples(&s);
	samples_free(&s);
	return 0;
}

#endif
