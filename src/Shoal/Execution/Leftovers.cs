using System.Globalization;

namespace Shoal.Execution;

/// <summary>
/// Finds processes through /proc. Used on rare paths only (a task left a process outside its process group that
/// still holds its log; a resume finds tasks of an earlier, killed shoal still running), never per task.
/// </summary>
public static class Leftovers
{
    /// <summary>SIGKILLs every process (and its process group) that has one of <paramref name="paths"/> open, as the
    /// kernel names them in /proc/PID/fd. A few passes, since a holder may fork while we look. Returns how many.</summary>
    public static int KillHolders(IReadOnlyList<string> paths)
    {
        var ownGroup = Native.GetPgrp();
        var killed = 0;
        for (var pass = 0; pass < 3; pass++)
        {
            var found = 0;
            foreach (var pid in Pids())
            {
                if (!Holds(pid, paths))
                {
                    continue;
                }

                found++;
                var group = ProcessGroup(pid);
                if (group > 1 && group != ownGroup)
                {
                    Native.Kill(-group, Native.SIGKILL);
                }

                Native.Kill(pid, Native.SIGKILL);
            }

            killed += found;
            if (found == 0)
            {
                break;
            }

            Thread.Sleep(20);
        }

        return killed;
    }

    /// <summary>
    /// Ends the processes of tasks of the run in <paramref name="runDir"/> that are still running on this machine
    /// (an earlier shoal was killed with -9 and its tasks, in process groups of their own, outlived it): found by the
    /// <c>SHOAL_RUN_DIR</c> and <c>SHOAL_TASK_ID</c> their environment started with, so a reused pid is never taken for
    /// one of them. TERM to each one's process group, up to <paramref name="grace"/> to exit, then KILL. Returns the
    /// task ids whose processes were found.
    /// </summary>
    public static IReadOnlyList<int> EndTasksOf(string runDir, TimeSpan grace) =>
        End(
            env => env.TryGetValue("SHOAL_RUN_DIR", out var dir) && dir == runDir
                && env.TryGetValue("SHOAL_TASK_ID", out var id) && int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var task) ? task : null,
            grace);

    /// <summary>Ends what a node setup or teardown of an earlier session of the run left running on
    /// <paramref name="node"/> (the step itself, when its shoal was killed, or a daemon it started): found by the
    /// <c>SHOAL_RUN_DIR</c>, <c>SHOAL_NODE</c>, <c>SHOAL_STEP</c> and <c>SHOAL_SESSION</c> they started with. Returns
    /// their pids.</summary>
    public static IReadOnlyList<int> EndStepsOf(string runDir, string node, int session, TimeSpan grace)
    {
        var current = session.ToString(CultureInfo.InvariantCulture);
        return End(
            env => env.TryGetValue("SHOAL_RUN_DIR", out var dir) && dir == runDir && env.ContainsKey("SHOAL_STEP")
                && env.TryGetValue("SHOAL_NODE", out var n) && n == node
                && env.TryGetValue("SHOAL_SESSION", out var s) && s != current ? 0 : null,
            grace);
    }

    /// <summary>TERM to each process that <paramref name="match"/> picks (by its initial environment, so a reused pid
    /// is never taken for it) and to its process group, up to <paramref name="grace"/> to exit, then KILL. Returns
    /// the distinct keys <paramref name="match"/> gave, or the pids when every key is 0.</summary>
    private static IReadOnlyList<int> End(Func<Dictionary<string, string>, int?> match, TimeSpan grace)
    {
        var ownGroup = Native.GetPgrp();
        var found = new List<(int Pid, int Group, int Key)>();
        foreach (var pid in Pids())
        {
            if (pid != Environment.ProcessId && InitialEnvironment(pid) is { } env && match(env) is { } key)
            {
                found.Add((pid, ProcessGroup(pid), key));
            }
        }

        if (found.Count == 0)
        {
            return [];
        }

        void SignalAll(int signal)
        {
            foreach (var (pid, group, _) in found)
            {
                if (group > 1 && group != ownGroup)
                {
                    Native.Kill(-group, signal);
                }

                Native.Kill(pid, signal);
            }
        }

        bool AllGone() => found.All(f => IsGone(f.Pid));
        SignalAll(Native.SIGTERM);
        var deadline = DateTime.UtcNow + grace;
        while (!AllGone() && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
        }

        if (!AllGone())
        {
            SignalAll(Native.SIGKILL);
            var killDeadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
            while (!AllGone() && DateTime.UtcNow < killDeadline)
            {
                Thread.Sleep(20);
            }
        }

        return found.All(f => f.Key == 0) ? [.. found.Select(f => f.Pid).Order()] : [.. found.Select(f => f.Key).Distinct().Order()];
    }

    /// <summary>True when the process no longer runs (gone, or a zombie waiting for its parent).</summary>
    public static bool IsGone(int pid) => Stat(pid) is not [not ('Z' or 'X'), ..];

    /// <summary>The kernel's name of an open descriptor of ours (what other processes' /proc/PID/fd links show).</summary>
    public static string? NameOfDescriptor(int fd)
    {
        try
        {
            return new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Every pid in /proc but ours.</summary>
    public static IEnumerable<int> Pids()
    {
        var self = System.Environment.ProcessId;
        string[] entries;
        try
        {
            entries = Directory.GetDirectories("/proc");
        }
        catch (IOException)
        {
            yield break;
        }

        foreach (var entry in entries)
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid != self)
            {
                yield return pid;
            }
        }
    }

    /// <summary>The process group of <paramref name="pid"/> (0 when it is gone).</summary>
    public static int ProcessGroup(int pid) =>
        Stat(pid)?.Split(' ') is [_, _, var group, ..] && int.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : 0;

    /// <summary>The fields of /proc/PID/stat after "pid (comm) " (state, ppid, pgrp, …), or null when it is gone. comm
    /// may hold spaces and parentheses, so the fields start after its last ')'.</summary>
    private static string? Stat(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var close = stat.LastIndexOf(')');
            return close < 0 || close + 2 > stat.Length ? null : stat[(close + 2)..];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The environment <paramref name="pid"/> started with, or null when it cannot be read.</summary>
    public static Dictionary<string, string>? InitialEnvironment(int pid)
    {
        try
        {
            var raw = File.ReadAllBytes($"/proc/{pid}/environ");
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in System.Text.Encoding.UTF8.GetString(raw).Split('\0', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = entry.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    env[entry[..eq]] = entry[(eq + 1)..];
                }
            }

            return env;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool Holds(int pid, IReadOnlyList<string> paths)
    {
        string[] fds;
        try
        {
            fds = Directory.GetFiles($"/proc/{pid}/fd");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }

        foreach (var fd in fds)
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            if (target is not null && paths.Contains(target))
            {
                return true;
            }
        }

        return false;
    }
}
