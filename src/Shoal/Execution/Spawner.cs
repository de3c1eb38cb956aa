using System.Runtime.InteropServices;
using System.Text;

namespace Shoal.Execution;

/// <summary>
/// posix_spawn with what a task needs: its own process group (so a timeout or a stop can kill all it started),
/// default signal dispositions and an empty mask (.NET ignores SIGPIPE; a child must not inherit that),
/// stdin from /dev/null (or a descriptor given, such as a pipe), stdout/stderr dup'ed from log descriptors.
/// Not thread-safe: one per spawning thread.
/// </summary>
internal sealed unsafe class Spawner : IDisposable
{
    private static readonly byte[] DevNull = "/dev/null\0"u8.ToArray();
    private const int LogMode = 0b110_100_100;
    private readonly void* _attr;
    private readonly void* _actions;
    private bool _disposed;

    public Spawner()
    {
        _attr = NativeMemory.AllocZeroed(Native.SpawnAttrSize);
        _actions = NativeMemory.AllocZeroed(Native.FileActionsSize);
        var set = NativeMemory.AllocZeroed(Native.SigSetSize);
        try
        {
            Check(Native.SpawnAttrInit(_attr), "posix_spawnattr_init");
            Check(Native.SpawnAttrSetFlags(_attr, Native.POSIX_SPAWN_SETPGROUP | Native.POSIX_SPAWN_SETSIGDEF | Native.POSIX_SPAWN_SETSIGMASK), "posix_spawnattr_setflags");
            Check(Native.SpawnAttrSetPgroup(_attr, 0), "posix_spawnattr_setpgroup");
            Check(Native.SigEmptySet(set), "sigemptyset");
            Check(Native.SpawnAttrSetSigMask(_attr, set), "posix_spawnattr_setsigmask");
            Check(Native.SigFillSet(set), "sigfillset");
            Check(Native.SpawnAttrSetSigDefault(_attr, set), "posix_spawnattr_setsigdefault");
        }
        finally
        {
            NativeMemory.Free(set);
        }
    }

    /// <summary>Starts a child. Each of <paramref name="argv"/>, <paramref name="envp"/> and the paths must end with a
    /// NUL byte. The child opens <paramref name="stdoutPath"/> and <paramref name="stderrPath"/> itself (O_APPEND),
    /// so each attempt holds open file descriptions of its own: the kernel then tells whether anything still holds
    /// them after the task ended (see <see cref="ProcessLauncher"/>). Null: inherit ours. <paramref name="stdinFd"/>:
    /// dup'ed to the child's stdin; -1: /dev/null.
    /// Returns the pid; throws <see cref="SpawnException"/> with the errno when the child cannot start.</summary>
    public int Spawn(byte[] path, IReadOnlyList<byte[]> argv, EnvironmentBlock baseEnv, IReadOnlyList<byte[]> envp, byte[]? stdoutPath, byte[]? stderrPath, int stdinFd = -1)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var handles = new List<GCHandle>(argv.Count + envp.Count + 2);
        var argvPtr = (byte**)NativeMemory.Alloc((nuint)(argv.Count + 1), (nuint)sizeof(byte*));
        var envPtr = (byte**)NativeMemory.Alloc((nuint)(baseEnv.Count + envp.Count + 1), (nuint)sizeof(byte*));
        try
        {
            for (var i = 0; i < argv.Count; i++)
            {
                argvPtr[i] = Pin(argv[i], handles);
            }

            argvPtr[argv.Count] = null;
            baseEnv.CopyPointers(envPtr);
            for (var i = 0; i < envp.Count; i++)
            {
                envPtr[baseEnv.Count + i] = Pin(envp[i], handles);
            }

            envPtr[baseEnv.Count + envp.Count] = null;
            Check(Native.FileActionsInit(_actions), "posix_spawn_file_actions_init");
            try
            {
                fixed (byte* devNull = DevNull)
                fixed (byte* pathPtr = path)
                fixed (byte* outPtr = stdoutPath)
                fixed (byte* errPtr = stderrPath)
                {
                    Check(
                        stdinFd >= 0 ? Native.FileActionsAddDup2(_actions, stdinFd, 0) : Native.FileActionsAddOpen(_actions, 0, devNull, Native.O_RDONLY, 0),
                        stdinFd >= 0 ? "adddup2" : "addopen");
                    if (stdoutPath is not null)
                    {
                        Check(Native.FileActionsAddOpen(_actions, 1, outPtr, Native.O_WRONLY | Native.O_APPEND | Native.O_CREAT, LogMode), "addopen");
                    }

                    if (stderrPath is not null)
                    {
                        Check(Native.FileActionsAddOpen(_actions, 2, errPtr, Native.O_WRONLY | Native.O_APPEND | Native.O_CREAT, LogMode), "addopen");
                    }

                    // Between posix_spawn's return and EndSpawn the reaper may see this child exit: it waits for us.
                    var ticket = ChildProcesses.Instance.BeginSpawn();
                    var rc = Native.PosixSpawn(out var pid, pathPtr, _actions, _attr, argvPtr, envPtr);
                    ChildProcesses.Instance.EndSpawn(ticket, rc == 0 ? pid : 0);
                    if (rc != 0)
                    {
                        throw new SpawnException(rc, $"cannot start {Encoding.UTF8.GetString(path).TrimEnd('\0')}: {Marshal.GetPInvokeErrorMessage(rc)}");
                    }

                    return pid;
                }
            }
            finally
            {
                _ = Native.FileActionsDestroy(_actions);
            }
        }
        finally
        {
            foreach (var h in handles)
            {
                h.Free();
            }

            NativeMemory.Free(argvPtr);
            NativeMemory.Free(envPtr);
        }
    }

    private static byte* Pin(byte[] bytes, List<GCHandle> handles)
    {
        var h = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        handles.Add(h);
        return (byte*)h.AddrOfPinnedObject();
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            throw new IOException($"{what} failed: {Marshal.GetPInvokeErrorMessage(rc)}");
        }
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            NativeMemory.Free(_attr);
            NativeMemory.Free(_actions);
        }
    }
}

/// <summary>A child could not be started; <see cref="Errno"/> says why (EAGAIN: process limit, ENOMEM, EMFILE...).</summary>
public sealed class SpawnException(int errno, string message) : IOException(message)
{
    public int Errno { get; } = errno;
}
