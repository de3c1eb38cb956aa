using System.Buffers;
using System.Buffers.Text;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Shoal.Cluster;

/// <summary>
/// How the run's secret reaches the workers without sitting in any process's environment (which a task can read:
/// <c>/proc/PPID/environ</c> shows a process's initial environment for as long as it lives, whatever it later
/// unsets). The leader writes one line, the secret in base64, to the stdin of its srun step and closes it; srun
/// (<c>--input=all</c>) hands that line to every worker, which reads exactly that line at start. Workers and leader
/// also make themselves non-dumpable, so that processes of the same user (the tasks) cannot read the secret out of
/// their memory through <c>/proc/PID/mem</c> or ptrace.
/// </summary>
internal static partial class RunSecret
{
    private const int MaxLine = 1024;
    private const int PR_SET_DUMPABLE = 4;

    public static byte[] ToLine(byte[] secret) => Encoding.ASCII.GetBytes(Convert.ToBase64String(secret) + "\n");

    /// <summary>Reads one line from <paramref name="stream"/> a byte at a time (nothing after its newline is
    /// consumed) and decodes it; null at end of file or when the line is not a secret of at least 16 bytes.</summary>
    public static byte[]? ReadLine(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var line = new byte[MaxLine];
        var length = 0;
        try
        {
            while (length < line.Length)
            {
                var n = stream.Read(line, length, 1);
                if (n == 0 || line[length] == (byte)'\n')
                {
                    break;
                }

                length++;
            }

            // Decoded straight from the bytes: no string copy of the secret is left on the heap.
            var text = line.AsSpan(0, length).Trim(" \r"u8);
            var secret = new byte[Base64.GetMaxDecodedFromUtf8Length(text.Length)];
            if (Base64.DecodeFromUtf8(text, secret, out _, out var written) != OperationStatus.Done || written < 16)
            {
                return null;
            }

            Array.Resize(ref secret, written);
            return secret;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(line);
        }
    }

    /// <summary>Makes this process non-dumpable: other processes of the user can no longer read its memory, attach to
    /// it or read its /proc files (they become root's); no core dump either. Children get the default back at exec.</summary>
    public static bool ProtectProcess() => Prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);
}
