/*
 * The same device-mapper operations through libdevmapper's C API (the path Docker's devicemapper
 * driver took): one dm_task per operation, created, run and destroyed. udev is never waited for:
 * dm_udev_set_sync_support(0) and no cookies; the device nodes libdevmapper stacks up are made
 * with dm_task_update_nodes() right after the operation, as part of its cost.
 * Speaks the line protocol of bench.h with the commands of dm-floor.c:
 *   version N | list N | info NAME N | status NAME N NOFLUSH | msgpair POOL N ID | suspres NAME N
 *   lifecycle POOL POOLDEV IMG IMGID CTR CTRID SECTORS TID N MNT
 */
#include "bench.h"

#include <libdevmapper.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *dmt = dm_task_create(type);
	if (!dmt) {
		fail("dm_task_create(%d) failed", type);
		return NULL;
	}
	if (name && !dm_task_set_name(dmt, name)) {
		dm_task_destroy(dmt);
		fail("dm_task_set_name(%s) failed", name);
		return NULL;
	}
	return dmt;
}

static int run(struct dm_task *dmt, const char *what, const char *name)
{
	int ok = dm_task_run(dmt);
	int err = dm_task_get_errno(dmt);
	if (!ok) {
		dm_task_destroy(dmt);
		return fail("%s %s failed: %s", what, name ? name : "", strerror(err));
	}
	return 0;
}

static int simple(int type, const char *what, const char *name)
{
	struct dm_task *dmt = task(type, name);
	if (!dmt) return -1;
	if (run(dmt, what, name) < 0) return -1;
	dm_task_destroy(dmt);
	return 0;
}

static int message(const char *pool, const char *text)
{
	struct dm_task *dmt = task(DM_DEVICE_TARGET_MSG, pool);
	if (!dmt) return -1;
	if (!dm_task_set_sector(dmt, 0) || !dm_task_set_message(dmt, text)) {
		dm_task_destroy(dmt);
		return fail("setting message %s failed", text);
	}
	if (run(dmt, text, pool) < 0) return -1;
	dm_task_destroy(dmt);
	return 0;
}

static int op_version(char **a)
{
	(void)a;
	char version[64];
	struct dm_task *dmt = task(DM_DEVICE_VERSION, NULL);
	if (!dmt) return -1;
	if (run(dmt, "version", NULL) < 0) return -1;
	dm_task_get_driver_version(dmt, version, sizeof version);
	dm_task_destroy(dmt);
	return 0;
}

static int op_list(char **a)
{
	(void)a;
	struct dm_task *dmt = task(DM_DEVICE_LIST, NULL);
	if (!dmt) return -1;
	if (run(dmt, "list", NULL) < 0) return -1;
	struct dm_names *names = dm_task_get_names(dmt);
	volatile int n = 0;
	if (names && names->dev) {
		for (;;) {
			n++;
			if (!names->next) break;
			names = (struct dm_names *)((char *)names + names->next);
		}
	}
	dm_task_destroy(dmt);
	return 0;
}

static int op_info(char **a)
{
	struct dm_info info;
	struct dm_task *dmt = task(DM_DEVICE_INFO, a[0]);
	if (!dmt) return -1;
	if (run(dmt, "info", a[0]) < 0) return -1;
	dm_task_get_info(dmt, &info);
	dm_task_destroy(dmt);
	return 0;
}

static int op_status(char **a)
{
	struct dm_task *dmt = task(DM_DEVICE_STATUS, a[0]);
	if (!dmt) return -1;
	if (num(a[1]) && !dm_task_no_flush(dmt)) {
		dm_task_destroy(dmt);
		return fail("dm_task_no_flush failed");
	}
	if (run(dmt, "status", a[0]) < 0) return -1;
	void *next = NULL;
	uint64_t start, length;
	char *type, *params;
	do next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
	while (next);
	dm_task_destroy(dmt);
	return 0;
}

static int op_msgpair(char **a)
{
	char text[64];
	snprintf(text, sizeof text, "create_thin %s", a[1]);
	if (message(a[0], text) < 0) return -1;
	snprintf(text, sizeof text, "delete %s", a[1]);
	return message(a[0], text);
}

static int op_suspres(char **a)
{
	if (simple(DM_DEVICE_SUSPEND, "suspend", a[0]) < 0) return -1;
	if (simple(DM_DEVICE_RESUME, "resume", a[0]) < 0) return -1;
	dm_task_update_nodes();
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

struct lifecycle {
	const char *pool, *pool_dev, *img, *img_id, *ctr, *ctr_id, *mnt;
	uint64_t sectors;
	unsigned long long tid;
	long long n;
	int snap, committed, active, mounted;
};

static int set_tid(const char *pool, unsigned long long from, unsigned long long to)
{
	char text[96];
	snprintf(text, sizeof text, "set_transaction_id %llu %llu", from, to);
	return message(pool, text);
}

static void undo(struct lifecycle *l)
{
	char text[64];
	if (l->mounted) umount2(l->mnt, MNT_DETACH);
	if (l->active) { simple(DM_DEVICE_REMOVE, "remove", l->ctr); dm_task_update_nodes(); }
	if (l->snap) { snprintf(text, sizeof text, "delete %s", l->ctr_id); message(l->pool, text); }
	if (l->committed) set_tid(l->pool, l->tid + 1, l->tid);
	rmdir(l->mnt);
}

static int lifecycle_one(struct lifecycle *l, samples_t *phases)
{
	char text[96], params[128], node[64], rootfs[512];
	uint64_t t[5];
	t[0] = now_ns();
	if (simple(DM_DEVICE_SUSPEND, "suspend", l->img) < 0) return -1;
	snprintf(text, sizeof text, "create_snap %s %s", l->ctr_id, l->img_id);
	int rc = message(l->pool, text);
	if (rc == 0) l->snap = 1;
	if (simple(DM_DEVICE_RESUME, "resume", l->img) < 0 || rc < 0) return -1;
	dm_task_update_nodes();
	if (set_tid(l->pool, l->tid, l->tid + 1) < 0) return -1;
	l->committed = 1;
	t[1] = now_ns();
	/* get: create with a table (libdevmapper then creates, loads and resumes), mount */
	struct dm_task *dmt = task(DM_DEVICE_CREATE, l->ctr);
	if (!dmt) return -1;
	snprintf(params, sizeof params, "%s %s", l->pool_dev, l->ctr_id);
	if (!dm_task_add_target(dmt, 0, l->sectors, "thin", params)) {
		dm_task_destroy(dmt);
		return fail("dm_task_add_target failed");
	}
	if (run(dmt, "create", l->ctr) < 0) return -1;
	struct dm_info info;
	dm_task_get_info(dmt, &info);
	dm_task_destroy(dmt);
	dm_task_update_nodes();
	l->active = 1;
	snprintf(node, sizeof node, "/dev/dm-%u", info.minor);
	if (mkdir(l->mnt, 0755) < 0 && errno != EEXIST) return fail("mkdir %s: %s", l->mnt, strerror(errno));
	if (mount(node, l->mnt, "ext4", 0, NULL) < 0) return fail("mount %s: %s", node, strerror(errno));
	l->mounted = 1;
	snprintf(rootfs, sizeof rootfs, "%s/rootfs", l->mnt);
	if (mkdir(rootfs, 0755) < 0 && errno != EEXIST) return fail("mkdir %s: %s", rootfs, strerror(errno));
	t[2] = now_ns();
	if (umount2(l->mnt, 0) < 0) return fail("umount %s: %s", l->mnt, strerror(errno));
	l->mounted = 0;
	if (simple(DM_DEVICE_REMOVE, "remove", l->ctr) < 0) return -1;
	dm_task_update_nodes();
	l->active = 0;
	t[3] = now_ns();
	snprintf(text, sizeof text, "delete %s", l->ctr_id);
	if (message(l->pool, text) < 0) return -1;
	l->snap = 0;
	if (set_tid(l->pool, l->tid + 1, l->tid) < 0) return -1;
	l->committed = 0;
	if (rmdir(l->mnt) < 0) return fail("rmdir %s: %s", l->mnt, strerror(errno));
	t[4] = now_ns();
	for (int i = 0; i < 4; i++) samples_push(&phases[i], t[i + 1] - t[i]);
	return 0;
}

static const char *const PHASES[] = { "create", "get", "put", "remove" };

static int run_lifecycle(char **a)
{
	struct lifecycle l = {
		.pool = a[0], .pool_dev = a[1], .img = a[2], .img_id = a[3], .ctr = a[4], .ctr_id = a[5],
		.sectors = (uint64_t)num(a[6]), .tid = (unsigned long long)num(a[7]), .n = num(a[8]), .mnt = a[9],
	};
	samples_t phases[4];
	for (int i = 0; i < 4; i++) samples_init(&phases[i], (size_t)l.n);
	int rc = 0;
	for (long long i = 0; i < l.n && rc == 0; i++) rc = lifecycle_one(&l, phases);
	if (rc < 0) {
		char saved[sizeof last_error];
		memcpy(saved, last_error, sizeof saved);
		undo(&l);
		memcpy(last_error, saved, sizeof saved);
	} else {
		reply_phases(PHASES, phases, 4);
	}
	for (int i = 0; i < 4; i++) samples_free(&phases[i]);
	return rc;
}

int main(void)
{
	dm_udev_set_sync_support(0);
	char *line = NULL;
	size_t cap = 0;
	char *f[MAX_FIELDS];
	while (getline(&line, &cap, stdin) > 0) {
		int n = split_fields(line, f);
		const char *cmd = f[0];
		int rc;
		if (!strcmp(cmd, "quit")) break;
		else if (!strcmp(cmd, "version") && n == 2) rc = timed(num(f[1]), op_version, NULL);
		else if (!strcmp(cmd, "list") && n == 2) rc = timed(num(f[1]), op_list, NULL);
		else if (!strcmp(cmd, "info") && n == 3) rc = timed(num(f[2]), op_info, (char *[]){ f[1] });
		else if (!strcmp(cmd, "status") && n == 4) rc = timed(num(f[2]), op_status, (char *[]){ f[1], f[3] });
		else if (!strcmp(cmd, "msgpair") && n == 4) rc = timed(num(f[2]), op_msgpair, (char *[]){ f[1], f[3] });
		else if (!strcmp(cmd, "suspres") && n == 3) rc = timed(num(f[2]), op_suspres, (char *[]){ f[1] });
		else if (!strcmp(cmd, "lifecycle") && n == 11) rc = run_lifecycle(f + 1);
		else rc = fail("unknown command or wrong field count: %s (%d fields)", cmd, n);
		if (rc < 0) reply_error();
	}
	free(line);
	dm_lib_release();
	return 0;
}
