using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Shoal.Execution;

/// <summary>The two commands a node runs around its tasks (<c>--node-setup</c>, <c>--node-teardown</c>).</summary>
public enum NodeStep
{
    Setup = 0,
    Teardown = 1,
}

/// <summary>How a node's setup or teardown went. <see cref="Status"/>: the exit code, or -signal (as for attempts);
/// <see cref="Error"/>: it could not run at all, or was stopped before its end; <see cref="Log"/>: its output file;
/// <see cref="Tail"/>: the end of that output, for messages.</summary>
public sealed record NodeStepResult(NodeStep Step, long StartUnixMs, long DurationMs, int Status, bool TimedOut, string Log, string Tail, string? Error)
{
    public bool Succeeded => Error is null && !TimedOut && Status == 0;

    /// <summary>"ok 1.2s", "exit 3 1.0s", "signal 9 0.5s", "timed out 10m", "stopped" or "error: ...".</summary>
    public string Describe()
    {
        var took = string.Create(CultureInfo.InvariantCulture, $"{DurationMs / 1000.0:0.0}s");
        return Error is not null ? (Error == Stopped ? "stopped" : $"error: {Error}")
            : TimedOut ? $"timed out after {took}"
            : Status == 0 ? $"ok {took}"
            : Status < 0 ? $"signal {-Status} {took}"
            : $"exit {Status} {took}";
    }

    /// <summary>The last non-blank line of <see cref="Tail"/>, or null.</summary>
    public string? LastLine => Tail.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim();

    /// <summary>What to tell of a step that failed on <paramref name="host"/> (null when it succeeded or the run's
    /// stop cut it short): how, the last line it printed, and where its output is.</summary>
    public string? FailureMessage(string host)
    {
        if (Succeeded || Error == Stopped)
        {
            return null;
        }

        var last = LastLine;
        return $"node {(Step == NodeStep.Setup ? "setup" : "teardown")} failed on {host} ({Describe()}){(Step == NodeStep.Setup ? "; no task runs there" : "")}{(last is null ? "" : $": {last}")}{(Log.Length > 0 ? $" (output: {Log})" : "")}";
    }

    /// <summary>The <see cref="Error"/> of a step cut short by the run's stop.</summary>
    public const string Stopped = "stopped by the run's stop";
}

/// <summary>What a node runs around its tasks, and for how long at most (null command: none).</summary>
public sealed record NodeStepPlan(string Shell, string? Setup, string? Teardown, TimeSpan SetupTimeout, TimeSpan TeardownTimeout, TimeSpan Grace)
{
    public bool Any => Setup is not null || Teardown is not null;

    public string? Command(NodeStep step) => step == NodeStep.Setup ? Setup : Teardown;

    public TimeSpan Timeout(NodeStep step) => step == NodeStep.Setup ? SetupTimeout : TeardownTimeout;
}

/// <summary>
/// Runs a node's setup or teardown: <c>SHELL -c COMMAND</c> in its own process group, stdout and stderr appended to
/// one log file, to its end or its timeout (then TERM to the group, KILL after the grace). Its end is the end of its
/// main process: what it started in the background (a daemon: MPS, a database) keeps running, for the tasks, until
/// the teardown stops it or the job ends.
/// </summary>
public static class NodeSteps
{
    /// <summary>Variables of ours that a step must not inherit from the worker (they describe one task).</summary>
    private static readonly string[] NotInherited = ["SHOAL_TASK_ID", "SHOAL_ATTEMPT", "SHOAL_SECRET", "OMP_NUM_THREADS"];

    private const int TailBytes = 2000;

    /// <summary>The longest step timeout (and the longest wait anything here does): a week.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(7);

    /// <summary><paramref name="wait"/>, at most <see cref="MaxTimeout"/> (Task.Delay refuses more than 49 days).</summary>
    public static TimeSpan Bounded(TimeSpan wait) => wait > MaxTimeout ? MaxTimeout : wait < TimeSpan.Zero ? TimeSpan.Zero : wait;

    /// <summary>The variables a step sees (besides the worker's own): the node, its slots and GPUs, the run.</summary>
    public static List<KeyValuePair<string, string>> Environment(NodeStep step, string node, int slots, IReadOnlyList<string> gpus, bool manageGpus, string runDir, int session)
    {
        ArgumentNullException.ThrowIfNull(gpus);
        var list = new List<KeyValuePair<string, string>>
        {
            new("SHOAL_NODE", node),
            new("SHOAL_NODE_SLOTS", slots.ToString(CultureInfo.InvariantCulture)),
            new("SHOAL_NODE_GPUS", string.Join(',', gpus)),
            new("SHOAL_RUN_DIR", runDir),
            new("SHOAL_SESSION", session.ToString(CultureInfo.InvariantCulture)),
            new("SHOAL_STEP", step == NodeStep.Setup ? "setup" : "teardown"),
        };
        if (manageGpus)
        {
            list.Add(new("CUDA_VISIBLE_DEVICES", string.Join(',', gpus)));
        }

        return list;
    }

    /// <summary>Runs <paramref name="command"/> to its end, its timeout, or <paramref name="stop"/>. Never throws for
    /// the command's sake: a command that cannot start is a result with an <see cref="NodeStepResult.Error"/>.</summary>
    public static async Task<NodeStepResult> RunAsync(NodeStep step, string shell, string command, IReadOnlyList<KeyValuePair<string, string>> environment, string logPath, TimeSpan timeout, TimeSpan grace, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var startMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var started = Stopwatch.GetTimestamp();
        var exit = new TaskCompletionSource<(int Code, int Signal)>(TaskCreationOptions.RunContinuationsAsynchronously);
        int pid;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
            pid = ChildProcess.Start(
                shell,
                ["-c", command],
                environment,
                NotInherited.Concat(environment.Select(e => e.Key)),
                (code, signal) => exit.TrySetResult((code, signal)),
                stdoutPath: logPath,
                stderrPath: logPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new NodeStepResult(step, startMs, 0, 0, false, logPath, "", $"cannot start it: {e.Message}");
        }

        var timedOut = false;
        var stopped = false;
        using (var cut = CancellationTokenSource.CreateLinkedTokenSource(stop))
        {
            var waitEnd = Task.Delay(Bounded(timeout), cut.Token);
            if (await Task.WhenAny(exit.Task, waitEnd).ConfigureAwait(false) != exit.Task)
            {
                stopped = stop.IsCancellationRequested;
                timedOut = !stopped;
                ChildProcess.Signal(pid, Native.SIGTERM);
                if (await Task.WhenAny(exit.Task, Task.Delay(Bounded(grace), CancellationToken.None)).ConfigureAwait(false) != exit.Task)
                {
                    ChildProcess.Signal(pid, Native.SIGKILL);
                }
            }

            await cut.CancelAsync().ConfigureAwait(false);
        }

        var (exitCode, signal) = await exit.Task.ConfigureAwait(false);
        var durationMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return new NodeStepResult(step, startMs, durationMs, signal != 0 ? -signal : exitCode, timedOut, logPath, Tail(logPath), stopped ? NodeStepResult.Stopped : null);
    }

    /// <summary>The last <see cref="TailBytes"/> bytes of the log, as text (empty when there is none).</summary>
    public static string Tail(string logPath)
    {
        try
        {
            using var file = new FileStream(logPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var length = (int)Math.Min(file.Length, TailBytes);
            file.Seek(-length, SeekOrigin.End);
            var buffer = new byte[length];
            file.ReadExactly(buffer);
            return Encoding.UTF8.GetString(buffer).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }
}

/// <summary>
/// A node-local lock that a worker holds from before its setup to after its teardown, so that the steps of one run
/// never run twice at once on a node (a resumed run's new worker waits for the old one's teardown). An flock on a
/// file in the temp directory, named by user, run directory and node (nodes that share a temp directory do not
/// block each other); the kernel drops it when the holder dies.
/// </summary>
public sealed class NodeLock : IDisposable
{
    private readonly FileStream _file;

    private NodeLock(FileStream file) => _file = file;

    public static string PathFor(string runDir, string node)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(runDir + "\n" + node)))[..16];
        return System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"shoal-{System.Environment.UserName}-{key}.lock");
    }

    /// <summary>Takes the lock, waiting up to <paramref name="wait"/>; null (with why) when it could not.</summary>
    public static async Task<(NodeLock? Lock, string? Error)> AcquireAsync(string runDir, string node, TimeSpan wait, CancellationToken stop)
    {
        var path = PathFor(runDir, node);
        var giveUp = DateTime.UtcNow + wait;
        while (true)
        {
            try
            {
                // .NET takes an flock(LOCK_EX|LOCK_NB) for FileShare.None, on a close-on-exec descriptor: no task inherits it.
                return (new NodeLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)), null);
            }
            catch (IOException e) when (e.HResult == Running.RunDirectory.SharingViolation)
            {
                if (DateTime.UtcNow >= giveUp || stop.IsCancellationRequested)
                {
                    return (null, $"another shoal worker of this run still holds {node} (lock {path}) after {Tasks.Duration.Format(wait)}");
                }

                await Task.Delay(500, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return (null, $"cannot take the node lock {path}: {e.Message}");
            }
        }
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>
/// One node's part in a session: takes the node lock and runs the setup before the node's first task, and the
/// teardown after its last (when the setup ran, whatever its result, or when there is no setup), then lets the lock
/// go. Used by <c>shoal worker</c> on each node and by a single-machine run.
/// </summary>
public sealed class NodeSession(NodeStepPlan plan, string runDir, int session, string node, int slots, IReadOnlyList<string> gpus, bool manageGpus, string logDirectory, string logPrefix) : IDisposable
{
    private NodeLock? _lock;
    private bool _began;
    private bool _tornDown;

    public string Node => node;

    /// <summary>Processes of an earlier session's steps found still running here and ended before the setup.</summary>
    public int LeftoversEnded { get; private set; }

    /// <summary>Takes the node lock and runs the setup. Returns null when there is nothing to run (no setup
    /// command, lock taken); else its result, which says whether tasks may run here.</summary>
    public async Task<NodeStepResult?> SetupAsync(CancellationToken stop)
    {
        if (!plan.Any)
        {
            return null;
        }

        var startMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var (taken, error) = await NodeLock.AcquireAsync(runDir, node, plan.SetupTimeout, stop).ConfigureAwait(false);
        if (taken is null)
        {
            return new NodeStepResult(NodeStep.Setup, startMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - startMs, 0, false, "", "", error);
        }

        _lock = taken;
        _began = true;

        // The lock is ours, but a step of an earlier session whose shoal was killed (or a daemon it started) may
        // still run here: the kernel dropped that shoal's lock, not its children. End them first.
        var left = await Task.Run(() => Leftovers.EndStepsOf(runDir, node, session, plan.Grace), CancellationToken.None).ConfigureAwait(false);
        if (left.Count > 0)
        {
            LeftoversEnded = left.Count;
        }

        return plan.Setup is { } command ? await RunAsync(NodeStep.Setup, command, stop).ConfigureAwait(false) : null;
    }

    /// <summary>Runs the teardown (once, and only when <see cref="SetupAsync"/> got the node), then lets the node
    /// lock go. Null when nothing ran.</summary>
    public async Task<NodeStepResult?> TeardownAsync(CancellationToken stop)
    {
        if (!_began || _tornDown)
        {
            return null;
        }

        _tornDown = true;
        try
        {
            return plan.Teardown is { } command ? await RunAsync(NodeStep.Teardown, command, stop).ConfigureAwait(false) : null;
        }
        finally
        {
            _lock?.Dispose();
            _lock = null;
        }
    }

    private Task<NodeStepResult> RunAsync(NodeStep step, string command, CancellationToken stop) =>
        NodeSteps.RunAsync(
            step,
            plan.Shell,
            command,
            NodeSteps.Environment(step, node, slots, gpus, manageGpus, runDir, session),
            System.IO.Path.Combine(logDirectory, $"{logPrefix}{(step == NodeStep.Setup ? "setup" : "teardown")}.log"),
            plan.Timeout(step),
            plan.Grace,
            stop);

    public void Dispose() => _lock?.Dispose();
}
