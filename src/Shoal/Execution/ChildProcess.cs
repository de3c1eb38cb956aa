using System.Text;

namespace Shoal.Execution;

/// <summary>Starts a helper process (srun) through the same spawner and reaper as tasks, inheriting our stdout and
/// stderr, with an environment of ours plus <c>extra</c> minus <c>remove</c>, and on its stdin either /dev/null or
/// the bytes of <c>stdin</c> then end of file (through a pipe: how a secret reaches our own step without sitting in
/// any process's environment).</summary>
public static class ChildProcess
{
    public static int Start(string path, IReadOnlyList<string> args, IEnumerable<KeyValuePair<string, string>> extra, IEnumerable<string> remove, Action<int, int> onExit, byte[]? stdin = null, string? stdoutPath = null, string? stderrPath = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(onExit);
        using var environment = new EnvironmentBlock(remove.Concat(extra.Select(e => e.Key)), extra);
        using var spawner = new Spawner();
        var file = Encoding.UTF8.GetBytes(path + "\0");
        var argv = new List<byte[]> { file };
        argv.AddRange(args.Select(a => Encoding.UTF8.GetBytes(a + "\0")));
        var stdout = stdoutPath is null ? null : Encoding.UTF8.GetBytes(stdoutPath + "\0");
        var stderr = stderrPath is null ? null : Encoding.UTF8.GetBytes(stderrPath + "\0");
        int pid;
        if (stdin is null)
        {
            pid = spawner.Spawn(file, argv, environment, [], stdout, stderr);
        }
        else
        {
            // Both ends close-on-exec: only the child's fd 0 (a dup2, which clears the flag) survives into it, so no
            // other child (a task spawned meanwhile) holds the write end open and the child does see end of file.
            var (read, write) = Native.Pipe();
            try
            {
                pid = spawner.Spawn(file, argv, environment, [], stdout, stderr, read);
                // At most a pipe's capacity: written whole without waiting for the reader. A child that is already
                // gone needs nothing (its exit is reported as usual).
                _ = Native.WriteAll(write, stdin);
            }
            finally
            {
                _ = Native.Close(read);
                _ = Native.Close(write);
            }
        }

        ChildProcesses.Instance.Register(pid, (status, _) =>
            onExit(Native.Exited(status) ? Native.ExitCode(status) : -1, Native.Exited(status) ? 0 : Native.TermSignal(status)));
        return pid;
    }

    /// <summary>Runs a short command (squeue, sbatch, scontrol) to its end and returns its exit status (-1 when killed
    /// by a signal, or killed after <paramref name="timeout"/>) and its standard output, which goes through
    /// <paramref name="scratch"/> (a file of ours, replaced). Its stderr is ours: the user sees its complaints.</summary>
    public static async Task<(int Code, string Output)> CaptureAsync(string path, IReadOnlyList<string> args, string scratch, TimeSpan timeout, IEnumerable<string>? remove = null)
    {
        try
        {
            File.Delete(scratch);
            var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            var pid = Start(path, args, [], remove ?? [], (code, signal) => exit.TrySetResult(signal == 0 ? code : -1), stdoutPath: scratch);
            if (await Task.WhenAny(exit.Task, Task.Delay(timeout)).ConfigureAwait(false) != exit.Task)
            {
                Signal(pid, Native.SIGKILL);
            }

            var code = await exit.Task.ConfigureAwait(false);
            var output = File.Exists(scratch) ? await File.ReadAllTextAsync(scratch).ConfigureAwait(false) : "";
            File.Delete(scratch);
            return (code, output);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Cannot start it (a process limit: EAGAIN) or cannot use the scratch file: the command's failure, told.
            return (-1, $"{Path.GetFileName(path)}: {e.Message}");
        }
    }

    /// <summary>Makes this process the owner of all its children; call first thing in Main, before .NET sets up its
    /// signal handling. SIGCHLD goes back to its default disposition (started with it ignored, e.g.
    /// <c>env --ignore-signal=CHLD</c>, the kernel would reap our children itself and .NET would reap every child on
    /// its own, and no task's exit would ever be seen), and children we did not start (inherited across exec, or
    /// orphans reparented to us as PID 1) are reaped and ignored.</summary>
    public static void TakeOverChildren()
    {
        _ = Native.SetSignalDisposition(Native.SIGCHLD, Native.SIG_DFL);
        ChildProcesses.ReapForeign = true;
    }

    /// <summary>The executable file <paramref name="program"/> names: itself when it holds a '/', else the first
    /// match in PATH; null when there is none (missing, or no execute bit).</summary>
    public static string? FindProgram(string program)
    {
        ArgumentNullException.ThrowIfNull(program);
        var candidates = program.Contains('/', StringComparison.Ordinal)
            ? [program]
            : (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, program));
        return candidates.FirstOrDefault(IsExecutableFile);
    }

    /// <summary>True for an existing file with an execute bit.</summary>
    public static bool IsExecutableFile(string path) =>
        File.Exists(path) && !OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    /// <summary>Signals a helper's process group (it has its own, like tasks).</summary>
    public static void Signal(int pid, int signal) => Native.Kill(-pid, signal);
}
