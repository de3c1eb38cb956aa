using System.Runtime.InteropServices;

namespace Shoal.Execution;

/// <summary>A pipe to hand a child a few bytes on its stdin (<see cref="ChildProcess"/>).</summary>
internal static unsafe partial class Native
{
    /// <summary>What can be written to a fresh pipe without a reader: Linux's minimum pipe capacity is one page.</summary>
    public const int PipeWriteLimit = 4096;

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte* buffer, nuint count);

    /// <summary>A pipe whose both ends are close-on-exec.</summary>
    public static (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (Pipe2(fds, O_CLOEXEC) != 0)
        {
            throw new IOException($"pipe2 failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        return (fds[0], fds[1]);
    }

    private const int EPIPE = 32;

    /// <summary>Writes all of <paramref name="data"/> (at most <see cref="PipeWriteLimit"/> bytes, so a fresh pipe
    /// takes it without blocking). False when the reading end is already closed (the child is gone).</summary>
    public static bool WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        if (data.Length > PipeWriteLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(data), $"at most {PipeWriteLimit} bytes");
        }

        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = Write(fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    if (errno == EPIPE)
                    {
                        return false;
                    }

                    throw new IOException($"write to a pipe failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                done += (int)n;
            }
        }

        return true;
    }
}
