/*
 * PID 1 of the throwaway test kernel (user-mode-linux or QEMU): one small static program, since
 * every process start costs 30-130 ms inside UML and a shell script would fork dozens of times.
 *
 * Contract with the host-side runner (test/vm/runner.ts), all through the share directory
 * named by VM_SHARE on the kernel command line (unknown KEY=value words become our env):
 *   <share>/modules   one .ko path per line, already in dependency order; loaded with finit_module
 *   <share>/keep      host paths under /tmp the job needs (its cwd, the project): bound back
 *                     on top of the private /tmp at the same paths
 *   <share>/job.sh    run as `/bin/sh <share>/job.sh`; sets cwd and env, then execs the command
 *   <share>/status    written by us: the job's exit status ("exit N" or "signal N")
 *   <share>/kernel.log written by us: the kernel log, for post-mortems
 * If PID 1 exits the kernel panics, so the job runs as a child and we power off ourselves.
 *
 * QEMU only: the kernel starts us as /init of a small initramfs, with VM_STAGE=initramfs on its
 * command line. That stage loads the modules listed in the initramfs's /modules (virtio and 9p,
 * copied in by test/vm/qemu.ts), mounts the host's `/` (9p tag VM_ROOT_TAG, default "hostroot",
 * mount options VM_ROOT_OPTIONS) and makes it the root the way switch_root does (MS_MOVE onto /, chroot); then the rest is as
 * under UML, which boots straight into the host's `/` and never sets VM_STAGE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define GUEST_SHARE "/run/vm"
#define HOST_TMP "/run/host-tmp"

static void note(const char *fmt, const char *a, int err) {
  dprintf(2, "vm-init: ");
  dprintf(2, fmt, a);
  if (err) dprintf(2, ": %s", strerror(err));
  dprintf(2, "\n");
}

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) != 0 && errno != EBUSY) note("mount %s failed", dst, errno);
}

static void power_off(void) {
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

static void mkdir_p(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') { *p = 0; mkdir(buf, 0755); *p = '/'; }
  }
  mkdir(buf, 0755);
}

/* Binds each listed host path under /tmp (seen through HOST_TMP) back at its own path. */
static void keep_host_paths(const char *list) {
  FILE *f = fopen(list, "r");
  if (!f) return;
  char line[4096], source[4200];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (strncmp(line, "/tmp/", 5) != 0 || strstr(line, "/../")) continue;
    snprintf(source, sizeof source, HOST_TMP "%s", line + 4);
    mkdir_p(line);
    if (mount(source, line, NULL, MS_BIND | MS_REC, NULL) != 0) note("cannot keep host path %s", line, errno);
  }
  fclose(f);
}

static void load_modules(const char *list) {
  FILE *f = fopen(list, "r");
  if (!f) return;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) continue;
    int fd = open(line, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { note("cannot open module %s", line, errno); continue; }
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) note("finit_module %s failed", line, errno);
    close(fd);
  }
  fclose(f);
}

static void save_kernel_log(void) {
  int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
  if (size <= 0) return;
  char *buf = malloc(size);
  if (!buf) return;
  int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
  int fd = open(GUEST_SHARE "/kernel.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0 && n > 0) { if (write(fd, buf, n) < 0) {} }
  if (fd >= 0) close(fd);
  free(buf);
}

/* Initramfs stage (QEMU): make the host's `/`, exported over virtio-9p, our root. */
static void enter_host_root(void) {
  const char *tag = getenv("VM_ROOT_TAG");
  const char *options = getenv("VM_ROOT_OPTIONS");
  if (!tag) tag = "hostroot";
  if (!options) options = "trans=virtio,version=9p2000.L,msize=262144";
  load_modules("/modules");
  mkdir("/newroot", 0755);
  /* The virtio device may still be probing right after its driver loaded: retry for ~5 s. */
  for (int tries = 0; mount(tag, "/newroot", "9p", 0, options) != 0; tries++) {
    if (tries == 250) { note("cannot mount the host root (9p tag %s)", tag, errno); power_off(); }
    usleep(20000);
  }
  if (chdir("/newroot") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0) {
    note("cannot switch to the host root%s", "", errno);
    power_off();
  }
}

int main(void) {
  const char *stage = getenv("VM_STAGE");
  if (stage && strcmp(stage, "initramfs") == 0) {
    enter_host_root();
    unsetenv("VM_STAGE");
  }
  const char *share = getenv("VM_SHARE");
  /* The console tty turns \n into \r\n; the runner wants the job's bytes as they are. */
  struct termios t;
  if (tcgetattr(1, &t) == 0) { t.c_oflag &= ~OPOST; tcsetattr(1, TCSANOW, &t); }

  must_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  must_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  /* devtmpfs creates /dev/mapper/control, /dev/loop*, /dev/dm-N without udev. */
  must_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  must_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
  must_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, NULL);
  /* Private /run and /tmp: never write the host's. The share dir is bound under /run first,
   * because it usually lives in the host's /tmp, which the private tmpfs is about to hide. */
  must_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  if (!share) { note("no VM_SHARE on the kernel command line%s", "", 0); power_off(); }
  must_mount(share, GUEST_SHARE, NULL, MS_BIND, NULL);
  must_mount("/tmp", HOST_TMP, NULL, MS_BIND, NULL);
  must_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  keep_host_paths(GUEST_SHARE "/keep");
  umount2(HOST_TMP, MNT_DETACH);
  /* Debian's /var/tmp, /var/lib/... stay the host's; jobs use /tmp. */

  load_modules(GUEST_SHARE "/modules");

  pid_t job = fork();
  if (job == 0) {
    setsid();
    char *argv[] = {"/bin/sh", GUEST_SHARE "/job.sh", NULL};
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=dumb", NULL};
    execve(argv[0], argv, envp);
    _exit(127);
  }
  int status = 0;
  for (;;) {
    pid_t p = wait(&status);
    if (p == job) break;
    if (p < 0 && errno == ECHILD) { status = 127 << 8; break; }
  }
  /* Stragglers (daemons the job left) die with the VM; reap them first so buffers flush. */
  kill(-1, SIGKILL);
  while (wait(NULL) > 0) {}
  save_kernel_log();
  char result[64];
  int len = WIFEXITED(status) ? snprintf(result, sizeof result, "exit %d\n", WEXITSTATUS(status))
                              : snprintf(result, sizeof result, "signal %d\n", WTERMSIG(status));
  int fd = open(GUEST_SHARE "/status", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) { if (write(fd, result, len) < 0) {} fsync(fd); close(fd); }
  umount2(GUEST_SHARE, MNT_DETACH);
  power_off();
  return 0;
}
