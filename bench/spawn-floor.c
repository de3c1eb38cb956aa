/* The floor for any task farm on this machine: a minimal C loop that keeps P children of PROGRAM running with
 * posix_spawn (own process group, stdout/stderr appended to per-slot files), waits for any, starts the next.
 * No journal, no capture bookkeeping, no scheduler. Usage: spawn-floor N P PROGRAM (bench/compare builds it). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
extern char **environ;
int main(int argc, char **argv) {
  int n = atoi(argv[1]), p = atoi(argv[2]);
  char *args[] = {argv[3], NULL};
  int running = 0, started = 0, done = 0;
  struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
  while (done < n) {
    while (running < p && started < n) {
      posix_spawn_file_actions_t fa; posix_spawn_file_actions_init(&fa);
      char o[64], e[64]; sprintf(o, "out/%d.o", started % p); sprintf(e, "out/%d.e", started % p);
      posix_spawn_file_actions_addopen(&fa, 1, o, O_WRONLY|O_CREAT|O_APPEND, 0644);
      posix_spawn_file_actions_addopen(&fa, 2, e, O_WRONLY|O_CREAT|O_APPEND, 0644);
      posix_spawnattr_t at; posix_spawnattr_init(&at); posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP); posix_spawnattr_setpgroup(&at, 0);
      pid_t pid; if (posix_spawn(&pid, args[0], &fa, &at, args, environ)) { perror("spawn"); return 1; }
      posix_spawn_file_actions_destroy(&fa); posix_spawnattr_destroy(&at);
      running++; started++;
    }
    int st; wait(&st); running--; done++;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  printf("%d tasks in %.2f s: %.0f/s\n", n, s, n / s);
}
