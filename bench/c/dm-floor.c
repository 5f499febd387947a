/*
 * The floor: device-mapper ioctls issued directly from C, timed per call, and the dmsetup route
 * (one dmsetup process per step, started with posix_spawn and waited for). Speaks the line
 * protocol of bench.h. Commands (fields separated by TAB):
 *   version N                          DM_VERSION
 *   list N                             DM_LIST_DEVICES (with DM_UUID_FLAG, as the library asks)
 *   info NAME N                        DM_DEV_STATUS
 *   status NAME N NOFLUSH              DM_TABLE_STATUS (NOFLUSH 1: with DM_NOFLUSH_FLAG)
 *   msgpair POOL N ID                  DM_TARGET_MSG "create_thin ID" + "delete ID"
 *   suspres NAME N                     DM_DEV_SUSPEND suspend + resume
 *   lifecycle POOL POOLDEV IMG IMGID CTR CTRID SECTORS TID N MNT
 *                                      a container layer's create/get/put/remove, raw ioctls + mount(2)
 *   plifecycle POOL POOLDEV IMG IMGID CTR CTRID SECTORS TID N MNT LOG
 *                                      the same with a crash protocol as cheap as one can be: create
 *                                      and remove append an intent line to LOG and fdatasync it
 *                                      before the kernel changes, and a done line (unsynced) after
 *   spawn N CMD...                     each sample runs the CMDs in turn (argv words split by 0x1f)
 *   dmlifecycle POOL POOLDEV IMG IMGID CTR CTRID SECTORS TID N MNT
 *                                      the same lifecycle the way a dmsetup-based snapshotter does it
 */
#include "bench.h"

#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int control_fd = -1;
static char *buffer;
static size_t buffer_size;
/**
 * data_size asked for per answering command (by ioctl nr), as tight as the library's engine:
 * 16 KiB the first time, doubled on DM_BUFFER_FULL_FLAG, then what the kernel used plus a
 * quarter (the kernel copies all of data_size in, so a loose buffer costs every call).
 */
static size_t answer_sizes[256];

#define HEADER_SIZE sizeof(struct dm_ioctl)

static struct dm_ioctl *header(size_t data_size, const char *name, uint32_t flags)
{
	if (buffer_size < data_size) {
		free(buffer);
		buffer_size = data_size;
		if (posix_memalign((void **)&buffer, 8, buffer_size)) abort();
	}
	struct dm_ioctl *dmi = (struct dm_ioctl *)buffer;
	memset(dmi, 0, HEADER_SIZE);
	dmi->version[0] = DM_VERSION_MAJOR;
	dmi->data_size = (uint32_t)data_size;
	dmi->data_start = HEADER_SIZE;
	dmi->flags = flags;
	if (name) strncpy(dmi->name, name, DM_NAME_LEN - 1);
	return dmi;
}

static int dm_call(unsigned long request, const char *what, const char *name)
{
	if (ioctl(control_fd, request, buffer) < 0) return fail("%s %s: %s", what, name ? name : "", strerror(errno));
	return 0;
}

/** An answering command: repeated with a doubled buffer while the kernel says BUFFER_FULL. */
static int dm_answer(unsigned long request, const char *what, const char *name, uint32_t flags)
{
	size_t *size = &answer_sizes[_IOC_NR(request)];
	if (*size == 0) *size = 16384;
	for (;;) {
		struct dm_ioctl *dmi = header(*size, name, flags);
		if (dm_call(request, what, name) < 0) return -1;
		if (dmi->flags & DM_BUFFER_FULL_FLAG) { *size *= 2; continue; }
		size_t used = dmi->data_size < *size ? dmi->data_size : *size;
		size_t next = used + used / 4;
		*size = next > HEADER_SIZE + 256 ? next : HEADER_SIZE + 256;
		return 0;
	}
}

/** The devtmpfs node (/dev/dm-N) of the device the last reply named (new_encode_dev dev_t). */
static void reply_node(char *node, size_t size)
{
	struct dm_ioctl *dmi = (struct dm_ioctl *)buffer;
	snprintf(node, size, "/dev/dm-%u", (unsigned)(((dmi->dev >> 12) & 0xffffff00u) | (dmi->dev & 0xffu)));
}

static int dm_simple(unsigned long request, const char *what, const char *name, uint32_t flags)
{
	header(HEADER_SIZE, name, flags);
	return dm_call(request, what, name);
}

static int dm_message(const char *pool, const char *text)
{
	size_t len = strlen(text) + 1;
	size_t size = HEADER_SIZE + sizeof(struct dm_target_msg) + len;
	struct dm_ioctl *dmi = header(size, pool, 0);
	struct dm_target_msg *msg = (struct dm_target_msg *)((char *)dmi + HEADER_SIZE);
	msg->sector = 0;
	memcpy(msg->message, text, len);
	return dm_call(DM_TARGET_MSG, text, pool);
}

static int count_names(void)
{
	struct dm_ioctl *dmi = (struct dm_ioctl *)buffer;
	if (dmi->data_size <= dmi->data_start) return 0;
	struct dm_name_list *entry = (struct dm_name_list *)(buffer + dmi->data_start);
	if (!entry->dev) return 0;
	int n = 0;
	for (;;) {
		n++;
		if (!entry->next) break;
		entry = (struct dm_name_list *)((char *)entry + entry->next);
	}
	return n;
}

/** DM_TABLE_LOAD of one thin target `POOLDEV ID` of `sectors`. */
static int load_thin(const char *name, const char *pool_dev, const char *id, uint64_t sectors)
{
	char params[128];
	snprintf(params, sizeof params, "%s %s", pool_dev, id);
	size_t spec = sizeof(struct dm_target_spec) + ((strlen(params) + 1 + 7) & ~(size_t)7);
	struct dm_ioctl *dmi = header(HEADER_SIZE + spec, name, 0);
	memset(buffer + HEADER_SIZE, 0, spec);
	dmi->target_count = 1;
	struct dm_target_spec *t = (struct dm_target_spec *)(buffer + HEADER_SIZE);
	t->sector_start = 0;
	t->length = sectors;
	t->next = (uint32_t)spec;
	strcpy(t->target_type, "thin");
	strcpy((char *)(t + 1), params);
	return dm_call(DM_TABLE_LOAD, "DM_TABLE_LOAD", name);
}

static int op_version(char **a) { (void)a; return dm_simple(DM_VERSION, "DM_VERSION", NULL, 0); }
static int op_list(char **a) { (void)a; if (dm_answer(DM_LIST_DEVICES, "DM_LIST_DEVICES", NULL, DM_UUID_FLAG) < 0) return -1; count_names(); return 0; }
static int op_info(char **a) { return dm_simple(DM_DEV_STATUS, "DM_DEV_STATUS", a[0], 0); }
static int op_status(char **a) { return dm_answer(DM_TABLE_STATUS, "DM_TABLE_STATUS", a[0], num(a[1]) ? DM_NOFLUSH_FLAG : 0); }
static int op_msgpair(char **a)
{
	char text[64];
	snprintf(text, sizeof text, "create_thin %s", a[1]);
	if (dm_message(a[0], text) < 0) return -1;
	snprintf(text, sizeof text, "delete %s", a[1]);
	return dm_message(a[0], text);
}
static int op_suspres(char **a)
{
	if (dm_simple(DM_DEV_SUSPEND, "suspend", a[0], DM_SUSPEND_FLAG) < 0) return -1;
	return dm_simple(DM_DEV_SUSPEND, "resume", a[0], 0);
}

/* ---------------------------------------------------------------------------------------- */
/* processes */

static int run_argv(char **argv)
{
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0) return fail("spawn %s: %s", argv[0], strerror(rc));
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) return fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char joined[512] = "";
		for (char **p = argv; *p; p++) {
			strncat(joined, *p, sizeof joined - strlen(joined) - 2);
			strncat(joined, " ", sizeof joined - strlen(joined) - 1);
		}
		return fail("`%s` failed with status %d", joined, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	return 0;
}

/** Runs a command given as one string with its words separated by 0x1f. */
static int run_words(const char *words)
{
	char copy[1024];
	char *argv[32];
	int n = 0;
	snprintf(copy, sizeof copy, "%s", words);
	for (char *p = copy; n < 31;) {
		argv[n++] = p;
		char *sep = strchr(p, '\x1f');
		if (!sep) break;
		*sep = '\0';
		p = sep + 1;
	}
	argv[n] = NULL;
	return run_argv(argv);
}

static int dmsetup(const char *a, const char *b, const char *c, const char *d, const char *e, const char *f)
{
	char *argv[] = { "dmsetup", "--noudevsync", (char *)a, (char *)b, (char *)c, (char *)d, (char *)e, (char *)f, NULL };
	return run_argv(argv);
}

/* ---------------------------------------------------------------------------------------- */
/* lifecycle */

struct lifecycle {
	const char *pool, *pool_dev, *img, *img_id, *ctr, *ctr_id, *mnt;
	uint64_t sectors;
	unsigned long long tid;
	long long n;
	int log_fd; /* plifecycle's log, -1 without one */
	/* what is done, for the cleanup after a failure */
	int snap, committed, active, mounted;
};

static void parse_lifecycle(char **a, struct lifecycle *l)
{
	l->pool = a[0]; l->pool_dev = a[1]; l->img = a[2]; l->img_id = a[3]; l->ctr = a[4]; l->ctr_id = a[5];
	l->sectors = (uint64_t)num(a[6]); l->tid = (unsigned long long)num(a[7]); l->n = num(a[8]); l->mnt = a[9];
	l->snap = l->committed = l->active = l->mounted = 0;
	l->log_fd = -1;
}

static int log_line(struct lifecycle *l, const char *what, int sync)
{
	char line[160];
	int len = snprintf(line, sizeof line, "%s %s %s %llu\n", what, l->ctr, l->ctr_id, l->tid);
	if (write(l->log_fd, line, (size_t)len) != len) return fail("write %s line: %s", what, strerror(errno));
	if (sync && fdatasync(l->log_fd) < 0) return fail("fdatasync: %s", strerror(errno));
	return 0;
}

/** The intent, durable before the kernel changes anything (no-op without a log). */
static int protocol_before(struct lifecycle *l, const char *op)
{
	return l->log_fd < 0 ? 0 : log_line(l, op, 1);
}

/** The change is done: a line the next start-up reads, not synced (the pool's tid says so too). */
static int protocol_after(struct lifecycle *l)
{
	return l->log_fd < 0 ? 0 : log_line(l, "done", 0);
}

static int set_tid(const char *pool, unsigned long long from, unsigned long long to)
{
	char text[96];
	snprintf(text, sizeof text, "set_transaction_id %llu %llu", from, to);
	return dm_message(pool, text);
}

/** Puts things back after a failed iteration, so the pool is as the caller left it. */
static void undo(struct lifecycle *l)
{
	char text[64];
	if (l->mounted) umount2(l->mnt, MNT_DETACH);
	if (l->active) dm_simple(DM_DEV_REMOVE, "remove", l->ctr, 0);
	if (l->snap) { snprintf(text, sizeof text, "delete %s", l->ctr_id); dm_message(l->pool, text); }
	if (l->committed) set_tid(l->pool, l->tid + 1, l->tid);
	rmdir(l->mnt);
}

static int make_dirs(const char *mnt)
{
	if (mkdir(mnt, 0755) < 0 && errno != EEXIST) return fail("mkdir %s: %s", mnt, strerror(errno));
	return 0;
}

static int make_rootfs(const char *mnt)
{
	char rootfs[512];
	snprintf(rootfs, sizeof rootfs, "%s/rootfs", mnt);
	if (mkdir(rootfs, 0755) < 0 && errno != EEXIST) return fail("mkdir %s: %s", rootfs, strerror(errno));
	return 0;
}

static const char *const PHASES[] = { "create", "get", "put", "remove" };

static int lifecycle_raw(struct lifecycle *l, samples_t *phases)
{
	char text[96], node[64];
	uint64_t t[5];
	t[0] = now_ns();
	/* create: snapshot of the active image layer, committed with set_transaction_id */
	if (protocol_before(l, "create") < 0) return -1;
	if (dm_simple(DM_DEV_SUSPEND, "suspend", l->img, DM_SUSPEND_FLAG) < 0) return -1;
	snprintf(text, sizeof text, "create_snap %s %s", l->ctr_id, l->img_id);
	int rc = dm_message(l->pool, text);
	if (rc == 0) l->snap = 1;
	if (dm_simple(DM_DEV_SUSPEND, "resume", l->img, 0) < 0 || rc < 0) return -1;
	if (set_tid(l->pool, l->tid, l->tid + 1) < 0) return -1;
	l->committed = 1;
	if (protocol_after(l) < 0) return -1;
	t[1] = now_ns();
	/* get: activate and mount */
	if (dm_simple(DM_DEV_CREATE, "DM_DEV_CREATE", l->ctr, 0) < 0) return -1;
	l->active = 1;
	if (load_thin(l->ctr, l->pool_dev, l->ctr_id, l->sectors) < 0) return -1;
	if (dm_simple(DM_DEV_SUSPEND, "resume", l->ctr, 0) < 0) return -1;
	reply_node(node, sizeof node);
	if (make_dirs(l->mnt) < 0) return -1;
	if (mount(node, l->mnt, "ext4", 0, NULL) < 0) return fail("mount %s: %s", node, strerror(errno));
	l->mounted = 1;
	if (make_rootfs(l->mnt) < 0) return -1;
	t[2] = now_ns();
	/* put: unmount and deactivate */
	if (umount2(l->mnt, 0) < 0) return fail("umount %s: %s", l->mnt, strerror(errno));
	l->mounted = 0;
	if (dm_simple(DM_DEV_REMOVE, "DM_DEV_REMOVE", l->ctr, 0) < 0) return -1;
	l->active = 0;
	t[3] = now_ns();
	/* remove: delete the thin id, committed */
	if (protocol_before(l, "remove") < 0) return -1;
	snprintf(text, sizeof text, "delete %s", l->ctr_id);
	if (dm_message(l->pool, text) < 0) return -1;
	l->snap = 0;
	if (set_tid(l->pool, l->tid + 1, l->tid) < 0) return -1;
	l->committed = 0;
	if (protocol_after(l) < 0) return -1;
	if (rmdir(l->mnt) < 0) return fail("rmdir %s: %s", l->mnt, strerror(errno));
	t[4] = now_ns();
	for (int i = 0; i < 4; i++) samples_push(&phases[i], t[i + 1] - t[i]);
	return 0;
}

static int lifecycle_dmsetup(struct lifecycle *l, samples_t *phases)
{
	char text[96], table[160], node[300];
	uint64_t t[5];
	t[0] = now_ns();
	if (dmsetup("suspend", l->img, NULL, NULL, NULL, NULL) < 0) return -1;
	snprintf(text, sizeof text, "create_snap %s %s", l->ctr_id, l->img_id);
	int rc = dmsetup("message", l->pool, "0", text, NULL, NULL);
	if (rc == 0) l->snap = 1;
	if (dmsetup("resume", l->img, NULL, NULL, NULL, NULL) < 0 || rc < 0) return -1;
	t[1] = now_ns();
	snprintf(table, sizeof table, "0 %llu thin %s %s", (unsigned long long)l->sectors, l->pool_dev, l->ctr_id);
	if (dmsetup("create", l->ctr, "--table", table, NULL, NULL) < 0) return -1;
	l->active = 1;
	/* dmsetup makes /dev/mapper/<name> only where udev or its library fallback does; without
	 * either, the device's number comes from one DM_DEV_STATUS (no process: cheaper than any
	 * way a snapshotter has to ask) and devtmpfs's /dev/dm-N is mounted */
	snprintf(node, sizeof node, "/dev/mapper/%s", l->ctr);
	if (access(node, F_OK) < 0) {
		if (dm_simple(DM_DEV_STATUS, "DM_DEV_STATUS", l->ctr, 0) < 0) return -1;
		reply_node(node, sizeof node);
	}
	if (make_dirs(l->mnt) < 0) return -1;
	if (mount(node, l->mnt, "ext4", 0, NULL) < 0) return fail("mount %s: %s", node, strerror(errno));
	l->mounted = 1;
	if (make_rootfs(l->mnt) < 0) return -1;
	t[2] = now_ns();
	if (umount2(l->mnt, 0) < 0) return fail("umount %s: %s", l->mnt, strerror(errno));
	l->mounted = 0;
	if (dmsetup("remove", l->ctr, NULL, NULL, NULL, NULL) < 0) return -1;
	l->active = 0;
	t[3] = now_ns();
	snprintf(text, sizeof text, "delete %s", l->ctr_id);
	if (dmsetup("message", l->pool, "0", text, NULL, NULL) < 0) return -1;
	l->snap = 0;
	if (rmdir(l->mnt) < 0) return fail("rmdir %s: %s", l->mnt, strerror(errno));
	t[4] = now_ns();
	for (int i = 0; i < 4; i++) samples_push(&phases[i], t[i + 1] - t[i]);
	return 0;
}

static int run_lifecycle(char **a, const char *log, int (*one)(struct lifecycle *, samples_t *))
{
	struct lifecycle l;
	parse_lifecycle(a, &l);
	if (log) {
		l.log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
		if (l.log_fd < 0) return fail("open %s: %s", log, strerror(errno));
	}
	samples_t phases[4];
	for (int i = 0; i < 4; i++) samples_init(&phases[i], (size_t)l.n);
	int rc = 0;
	for (long long i = 0; i < l.n && rc == 0; i++) rc = one(&l, phases);
	if (rc < 0) {
		char saved[sizeof last_error];
		memcpy(saved, last_error, sizeof saved);
		undo(&l);
		memcpy(last_error, saved, sizeof saved);
	} else {
		reply_phases(PHASES, phases, 4);
	}
	for (int i = 0; i < 4; i++) samples_free(&phases[i]);
	if (l.log_fd >= 0) close(l.log_fd);
	return rc;
}

/** One sample of a spawn line: each command of the NULL-terminated list, one process each. */
static int op_spawn(char **commands)
{
	for (char **c = commands; *c; c++)
		if (run_words(*c) < 0) return -1;
	return 0;
}

int main(void)
{
	control_fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	if (control_fd < 0) {
		fail("open /dev/mapper/control: %s", strerror(errno));
		reply_error();
		return 1;
	}
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
		else if (!strcmp(cmd, "lifecycle") && n == 11) rc = run_lifecycle(f + 1, NULL, lifecycle_raw);
		else if (!strcmp(cmd, "plifecycle") && n == 12) rc = run_lifecycle(f + 1, f[11], lifecycle_raw);
		else if (!strcmp(cmd, "dmlifecycle") && n == 11) rc = run_lifecycle(f + 1, NULL, lifecycle_dmsetup);
		else if (!strcmp(cmd, "spawn") && n >= 3 && n < MAX_FIELDS) { f[n] = NULL; rc = timed(num(f[1]), op_spawn, f + 2); }
		else rc = fail("unknown command or wrong field count: %s (%d fields)", cmd, n);
		if (rc < 0) reply_error();
	}
	free(line);
	return 0;
}
