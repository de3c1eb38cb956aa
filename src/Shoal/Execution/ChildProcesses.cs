using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Shoal.Execution;

/// <summary>
/// Reaps every child this process starts with <see cref="Spawner"/>: one thread waits for any child to exit
/// without reaping it (<c>waitid(P_ALL, WEXITED|WNOWAIT)</c>), reaps it with <c>wait4(pid)</c>, and hands the exit of
/// one of ours to the callback registered for its pid.
/// <para>A child that is not ours is one of three kinds. (1) A child of <c>System.Diagnostics.Process</c> in the same
/// process (the test host has both): .NET reaps it, stealing it would make .NET fail fast, so it is left alone while
/// <see cref="ReapForeign"/> is false. (2) Ours in the instant between posix_spawn's return and
/// <see cref="EndSpawn"/>: the reaper waits until every spawn that was in flight when it first saw the pid has ended.
/// (3) Anything else — a child inherited across exec (<c>sh -c 'cmd &amp; exec shoal …'</c>), an orphan reparented to us
/// (shoal as PID 1 in a container, or a subreaper) — is reaped and forgotten when <see cref="ReapForeign"/> is true,
/// as it is in the shoal binary, which starts no child any other way. Peeking at such a zombie for ever instead would
/// hide the exits behind it (the run would hang).</para>
/// A child can exit before its spawner registered the callback; that exit is parked until the registration arrives.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A process-wide singleton that lives as long as the process.")]
internal sealed class ChildProcesses
{
    public static readonly ChildProcesses Instance = new();

    private readonly Lock _lock = new();
    private readonly Dictionary<int, Action<int, long>> _callbacks = [];
    private readonly Dictionary<int, (int Status, long Timestamp)> _early = [];
    private readonly HashSet<int> _ours = [];
    private readonly List<long> _spawning = [];
    private readonly HandOff<int> _live = new(); // one item per child of ours not reaped yet
    private long _nextTicket;
    private Thread? _reaper;

    [ThreadStatic]
    private static bool t_reaper;

    /// <summary>True on the reaper thread: the one thread that may take the run loop's turn for an exit (see
    /// RunLoop.InlineExitSink); exits reported on any other thread (a spawner's refused start) go through the loop.</summary>
    public static bool OnReaperThread => t_reaper;

    /// <summary>True: children that are not ours are reaped (set by the shoal binary, which owns all its children).</summary>
    public static bool ReapForeign { get; set; }

    /// <summary>Called right before posix_spawn; returns a ticket for <see cref="EndSpawn"/>.</summary>
    public long BeginSpawn()
    {
        EnsureReaper();
        lock (_lock)
        {
            var ticket = _nextTicket++;
            _spawning.Add(ticket);
            return ticket;
        }
    }

    /// <summary>Called right after posix_spawn with the child's pid (0 when it failed), before <see cref="Register"/>.</summary>
    public void EndSpawn(long ticket, int pid)
    {
        lock (_lock)
        {
            _spawning.Remove(ticket);
            if (pid > 0)
            {
                _ours.Add(pid);
            }
        }

        if (pid > 0)
        {
            _live.Add(pid);
        }
    }

    /// <summary>Registers the exit callback (status, Stopwatch timestamp) of a started child.</summary>
    public void Register(int pid, Action<int, long> onExit)
    {
        (int Status, long Timestamp) early;
        lock (_lock)
        {
            if (!_early.Remove(pid, out early))
            {
                _callbacks.Add(pid, onExit);
                return;
            }
        }

        onExit(early.Status, early.Timestamp);
    }

    private void EnsureReaper()
    {
        if (_reaper is not null)
        {
            return;
        }

        lock (_lock)
        {
            if (_reaper is null)
            {
                var t = new Thread(Reap) { IsBackground = true, Name = "shoal-reaper" };
                t.Start();
                _reaper = t;
            }
        }
    }

    private unsafe void Reap()
    {
        t_reaper = true;
        var info = stackalloc byte[Native.SigInfoSize];
        var unknownPid = 0;
        var unknownSeenAt = 0L;
        while (true)
        {
            _live.Take(out _);
            int pid;
            int status;
            while (true)
            {
                new Span<byte>(info, Native.SigInfoSize).Clear();
                if (Native.WaitId(Native.P_ALL, 0, info, Native.WEXITED | Native.WNOWAIT) != 0)
                {
                    // EINTR: again. ECHILD cannot happen while _live counts one of ours (SIGCHLD is not ignored:
                    // the binary resets it at start); do not spin if it does.
                    if (Marshal.GetLastPInvokeError() != Native.EINTR)
                    {
                        Thread.Sleep(10);
                    }

                    continue;
                }

                pid = *(int*)(info + Native.SigInfoPidOffset);
                bool ours;
                bool maybeOurs;
                lock (_lock)
                {
                    ours = _ours.Remove(pid);
                    if (!ours && pid != unknownPid)
                    {
                        // First sight: any spawn in flight now may yet turn out to have started it.
                        unknownPid = pid;
                        unknownSeenAt = _nextTicket;
                    }

                    maybeOurs = !ours && _spawning.Exists(t => t < unknownSeenAt);
                }

                if (ours)
                {
                    unknownPid = 0;
                    while (Native.Wait4(pid, out status, 0, null) < 0 && Marshal.GetLastPInvokeError() == Native.EINTR)
                    {
                    }

                    break;
                }

                if (maybeOurs)
                {
                    Thread.Yield();
                }
                else if (ReapForeign)
                {
                    // Not ours and never will be: reap it so that it stops hiding the exits behind it.
                    _ = Native.Wait4(pid, out _, Native.WNOHANG, null);
                    unknownPid = 0;
                }
                else
                {
                    // A child of System.Diagnostics.Process: .NET reaps it; look again shortly.
                    Thread.Sleep(1);
                }
            }

            var now = Stopwatch.GetTimestamp();
            Action<int, long>? callback;
            lock (_lock)
            {
                if (!_callbacks.Remove(pid, out callback))
                {
                    _early[pid] = (status, now);
                }
            }

            callback?.Invoke(status, now);
        }
    }
}
