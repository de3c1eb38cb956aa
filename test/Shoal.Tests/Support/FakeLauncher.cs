using System.Collections.Concurrent;
using Shoal.Execution;

namespace Shoal.Tests.Support;

/// <summary>A launcher whose tasks end when the test says so. Records launches and signals.</summary>
public sealed class FakeLauncher : ITaskLauncher
{
    private readonly Action<TaskExit> _onExit;
    private readonly ConcurrentDictionary<int, LaunchRequest> _running = new();

    public FakeLauncher(Action<TaskExit> onExit) => _onExit = onExit;

    public ConcurrentQueue<LaunchRequest> Launched { get; } = new();

    public ConcurrentQueue<(int Task, int Signal)> Signals { get; } = new();

    public int MaxConcurrent { get; private set; }

    /// <summary>The worker id its exits carry.</summary>
    public int Worker { get; init; }

    /// <summary>When set, a signalled task ends at once as killed by that signal.</summary>
    public bool DieOnSignal { get; set; } = true;

    public IReadOnlyCollection<LaunchRequest> Running => [.. _running.Values];

    public void Launch(LaunchRequest request)
    {
        _running[request.Task] = request;
        MaxConcurrent = Math.Max(MaxConcurrent, _running.Count);
        Launched.Enqueue(request);
    }

    public void Signal(int task, int signal)
    {
        Signals.Enqueue((task, signal));
        if (DieOnSignal && _running.ContainsKey(task))
        {
            Finish(task, exitCode: -1, signal: signal, signalled: true);
        }
    }

    /// <summary>Ends a running task. <paramref name="signalled"/>: a signal of ours reached it before it ended;
    /// <paramref name="spawnFailed"/>: it never started (then <paramref name="exitCode"/> is the errno).</summary>
    public void Finish(int task, int exitCode = 0, int signal = 0, bool signalled = false, bool spawnFailed = false)
    {
        if (_running.TryRemove(task, out var r))
        {
            _onExit(new TaskExit(task, r.Attempt, exitCode, signal, 0, 1, r.Lane, 0, 0, 0, 0, Worker, spawnFailed, Signalled: signalled));
        }
    }

    public void Dispose()
    {
    }
}
