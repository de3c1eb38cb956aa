using System.Text;

namespace Shoal.Execution;

/// <summary>Starts a helper process (srun) through the same spawner and reaper as tasks, inheriting our stdout and
/// stderr, with an environment of ours plus <c>extra</c> minus <c>remove</c>: how a secret reaches our own step.</summary>
public static class ChildProcess
{
    public static int Start(string path, IReadOnlyList<string> args, IEnumerable<KeyValuePair<string, string>> extra, IEnumerable<string> remove, Action<int, int> onExit)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(onExit);
        using var environment = new EnvironmentBlock(remove.Concat(extra.Select(e => e.Key)), extra);
        using var spawner = new Spawner();
        var file = Encoding.UTF8.GetBytes(path + "\0");
        var argv = new List<byte[]> { file };
        argv.AddRange(args.Select(a => Encoding.UTF8.GetBytes(a + "\0")));
        var pid = spawner.Spawn(file, argv, environment, [], -1, -1);
        ChildProcesses.Instance.Register(pid, (status, _) =>
            onExit(Native.Exited(status) ? Native.ExitCode(status) : -1, Native.Exited(status) ? 0 : Native.TermSignal(status)));
        return pid;
    }

    /// <summary>Signals a helper's process group (it has its own, like tasks).</summary>
    public static void Signal(int pid, int signal) => Native.Kill(-pid, signal);
}
