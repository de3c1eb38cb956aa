using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Shoal.Execution;

/// <summary>
/// Reaps every child this process starts with <see cref="Spawner"/>: one thread waits for any child to exit
/// without reaping it (<c>waitid(P_ALL, WEXITED|WNOWAIT)</c>), reaps it with <c>wait4(pid)</c> only if it is one of
/// ours, and hands the exit to the callback registered for its pid. Children of <c>System.Diagnostics.Process</c> in
/// the same process (the test host has both) are left for .NET to reap: stealing them makes .NET fail fast.
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
    private readonly SemaphoreSlim _live = new(0);
    private Thread? _reaper;

    /// <summary>Called by a spawner right after posix_spawn succeeded, before <see cref="Register"/>.</summary>
    public void Started(int pid)
    {
        EnsureReaper();
        lock (_lock)
        {
            _ours.Add(pid);
        }

        _live.Release();
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
        var info = stackalloc byte[Native.SigInfoSize];
        while (true)
        {
            _live.Wait();
            int pid;
            int status;
            while (true)
            {
                new Span<byte>(info, Native.SigInfoSize).Clear();
                if (Native.WaitId(Native.P_ALL, 0, info, Native.WEXITED | Native.WNOWAIT) != 0)
                {
                    // EINTR: again. ECHILD cannot happen while _live counts one of ours; do not spin if it does.
                    if (Marshal.GetLastPInvokeError() != Native.EINTR)
                    {
                        Thread.Sleep(10);
                    }

                    continue;
                }

                pid = *(int*)(info + Native.SigInfoPidOffset);
                bool ours;
                lock (_lock)
                {
                    ours = _ours.Remove(pid);
                }

                if (!ours)
                {
                    // Someone else's child (.NET will reap it), or ours in the instant before Started(): look again shortly.
                    Thread.Sleep(1);
                    continue;
                }

                while (Native.Wait4(pid, out status, 0, null) < 0 && Marshal.GetLastPInvokeError() == Native.EINTR)
                {
                }

                break;
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
