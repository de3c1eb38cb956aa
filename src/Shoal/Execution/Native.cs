using System.Runtime.InteropServices;

namespace Shoal.Execution;

/// <summary>
/// The few libc calls Shoal needs to start tasks cheaply: <c>posix_spawn</c> opens the child's stdout/stderr on our
/// log files and puts it in its own process group without a pipe or a copy (.NET's <c>Process</c> offers pipes only,
/// at 2–4x the parent CPU per task; see shared/DOTNET-NOTES.md). Linux x86-64/arm64 glibc constants.
/// </summary>
internal static unsafe partial class Native
{
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;

    public const int SIGCHLD = 17;
    public const int SIGIO = 29;

    public const int EINTR = 4;
    public const int ECHILD = 10;
    public const int ESRCH = 3;
    public const int EAGAIN = 11;
    public const int ENOENT = 2;
    public const int ENOEXEC = 8;
    public const int EACCES = 13;
    public const int ENOTDIR = 20;
    public const int EISDIR = 21;
    public const int EINVAL = 22;
    public const int ENOMEM = 12;
    public const int ENFILE = 23;
    public const int EMFILE = 24;

    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_CREAT = 0x40;
    public const int O_APPEND = 0x400;
    public const int O_CLOEXEC = 0x80000;

    public const short POSIX_SPAWN_SETPGROUP = 0x02;
    public const short POSIX_SPAWN_SETSIGDEF = 0x04;
    public const short POSIX_SPAWN_SETSIGMASK = 0x08;

    // glibc x86-64: posix_spawnattr_t is 336 bytes, posix_spawn_file_actions_t 80, sigset_t 128. Room to spare.
    public const int SpawnAttrSize = 1024;
    public const int FileActionsSize = 512;
    public const int SigSetSize = 256;

    [LibraryImport("libc", EntryPoint = "posix_spawn")]
    public static partial int PosixSpawn(out int pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    public static partial int FileActionsInit(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    public static partial int FileActionsDestroy(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    public static partial int FileActionsAddDup2(void* actions, int fd, int newFd);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen")]
    public static partial int FileActionsAddOpen(void* actions, int fd, byte* path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_init")]
    public static partial int SpawnAttrInit(void* attr);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setflags")]
    public static partial int SpawnAttrSetFlags(void* attr, short flags);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setpgroup")]
    public static partial int SpawnAttrSetPgroup(void* attr, int pgroup);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigmask")]
    public static partial int SpawnAttrSetSigMask(void* attr, void* sigset);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigdefault")]
    public static partial int SpawnAttrSetSigDefault(void* attr, void* sigset);

    [LibraryImport("libc", EntryPoint = "sigemptyset")]
    public static partial int SigEmptySet(void* set);

    [LibraryImport("libc", EntryPoint = "sigfillset")]
    public static partial int SigFillSet(void* set);

    [LibraryImport("libc", EntryPoint = "wait4", SetLastError = true)]
    public static partial int Wait4(int pid, out int status, int options, void* rusage);

    public const int P_ALL = 0;
    public const int WEXITED = 4;
    public const int WNOWAIT = 0x01000000;

    /// <summary>siginfo_t is 128 bytes; si_pid sits at offset 16 on Linux x86-64 and arm64.</summary>
    public const int SigInfoSize = 128;
    public const int SigInfoPidOffset = 16;

    [LibraryImport("libc", EntryPoint = "waitid", SetLastError = true)]
    public static partial int WaitId(int idType, int id, void* info, int options);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    public static partial int Open(byte* path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "close")]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int GetPid();

    [LibraryImport("libc", EntryPoint = "getpgrp")]
    public static partial int GetPgrp();

    public const int P_PID = 1;
    public const int WNOHANG = 1;

    public const int F_SETLEASE = 1024;
    public const int F_RDLCK = 0;
    public const int F_UNLCK = 2;

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    /// <summary>signal(2): only to reset a disposition to SIG_DFL (0) or SIG_IGN (1) before .NET installs its handlers.</summary>
    [LibraryImport("libc", EntryPoint = "signal")]
    public static partial nint SetSignalDisposition(int signal, nint handler);

    public const nint SIG_DFL = 0;
    public const nint SIG_IGN = 1;

    /// <summary>True when <paramref name="pid"/> (our child) has already exited: a zombie not yet reaped, or reaped.</summary>
    public static bool HasExited(int pid)
    {
        var info = stackalloc byte[SigInfoSize];
        new Span<byte>(info, SigInfoSize).Clear();
        if (WaitId(P_PID, pid, info, WEXITED | WNOHANG | WNOWAIT) != 0)
        {
            return Marshal.GetLastPInvokeError() == ECHILD;
        }

        return *(int*)(info + SigInfoPidOffset) == pid;
    }

    public const int SEEK_END = 2;

    public static bool Exited(int status) => (status & 0x7f) == 0;

    public static int ExitCode(int status) => (status >> 8) & 0xff;

    public static int TermSignal(int status) => status & 0x7f;
}
