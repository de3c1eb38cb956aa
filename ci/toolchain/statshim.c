/* zig 0.11's wrappers for stat/lstat/fstat on glibc < 2.33 return -1 without setting errno (SQLite then cannot
   tell "no such file" from an error). These call glibc's own __xstat family, which sets errno, and win over the
   weak wrappers of zig's libc_nonshared.a. */
#include <sys/types.h>
#if defined(__x86_64__)
#define SHOAL_STAT_VER 1
#else
#define SHOAL_STAT_VER 0
#endif
struct stat;
struct stat64;
extern int __xstat64(int, const char *, struct stat64 *);
extern int __lxstat64(int, const char *, struct stat64 *);
extern int __fxstat64(int, int, struct stat64 *);
extern int __fxstatat64(int, int, const char *, struct stat64 *, int);
int stat64(const char *p, struct stat64 *b) { return __xstat64(SHOAL_STAT_VER, p, b); }
int lstat64(const char *p, struct stat64 *b) { return __lxstat64(SHOAL_STAT_VER, p, b); }
int fstat64(int fd, struct stat64 *b) { return __fxstat64(SHOAL_STAT_VER, fd, b); }
int fstatat64(int d, const char *p, struct stat64 *b, int f) { return __fxstatat64(SHOAL_STAT_VER, d, p, b, f); }
int stat(const char *p, struct stat *b) { return __xstat64(SHOAL_STAT_VER, p, (struct stat64 *)b); }
int lstat(const char *p, struct stat *b) { return __lxstat64(SHOAL_STAT_VER, p, (struct stat64 *)b); }
int fstat(int fd, struct stat *b) { return __fxstat64(SHOAL_STAT_VER, fd, (struct stat64 *)b); }
int fstatat(int d, const char *p, struct stat *b, int f) { return __fxstatat64(SHOAL_STAT_VER, d, p, (struct stat64 *)b, f); }

#ifdef SHOAL_FCNTL64
/* glibc < 2.28 has no fcntl64; Debian's libsqlite3.a (built against newer headers) calls it. On 64-bit targets
   fcntl64 and fcntl are the same call (the *64 lock structures and commands are the plain ones). */
#include <stdarg.h>
extern int fcntl(int, int, ...);
int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl(fd, cmd, arg);
}
#endif
