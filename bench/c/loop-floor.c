/*
 * The floor of the native part: loop-device ioctls issued directly from C on this host.
 * Speaks the line protocol of bench.h:
 *   getfree N REOPEN            LOOP_CTL_GET_FREE on /dev/loop-control
 *   getstatus PATH N REOPEN     LOOP_GET_STATUS64 on an attached /dev/loopN
 * REOPEN 0: one fd opened before the loop (the raw ioctl); 1: open + ioctl + close per call
 * (what LoopDevices does per method call).
 */
#include "bench.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int one(const char *path, int flags, unsigned long request, int fd, int reopen, struct loop_info64 *info)
{
	if (reopen) {
		fd = open(path, flags | O_CLOEXEC);
		if (fd < 0) return fail("open %s: %s", path, strerror(errno));
	}
	int rc = info ? ioctl(fd, request, info) : ioctl(fd, request, 0);
	int err = errno;
	if (reopen) close(fd);
	if (rc < 0) return fail("ioctl on %s: %s", path, strerror(err));
	return 0;
}

static int run(const char *path, int flags, unsigned long request, long long n, int reopen, int with_info)
{
	int fd = -1;
	struct loop_info64 info;
	if (!reopen) {
		fd = open(path, flags | O_CLOEXEC);
		if (fd < 0) return fail("open %s: %s", path, strerror(errno));
	}
	samples_t s;
	samples_init(&s, (size_t)n);
	int rc = 0;
	for (long long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		if ((rc = one(path, flags, request, fd, reopen, with_info ? &info : NULL)) < 0) break;
		samples_push(&s, now_ns() - t0);
	}
	if (fd >= 0) close(fd);
	if (rc == 0) reply_samples(&s);
	samples_free(&s);
	return rc;
}

int main(void)
{
	char *line = NULL;
	size_t cap = 0;
	char *f[MAX_FIELDS];
	while (getline(&line, &cap, stdin) > 0) {
		int n = split_fields(line, f);
		int rc;
		if (!strcmp(f[0], "quit")) break;
		else if (!strcmp(f[0], "getfree") && n == 3) rc = run("/dev/loop-control", O_RDWR, LOOP_CTL_GET_FREE, num(f[1]), (int)num(f[2]), 0);
		else if (!strcmp(f[0], "getstatus") && n == 4) rc = run(f[1], O_RDONLY, LOOP_GET_STATUS64, num(f[2]), (int)num(f[3]), 1);
		else rc = fail("unknown command or wrong field count: %s (%d fields)", f[0], n);
		if (rc < 0) reply_error();
	}
	free(line);
	return 0;
}
