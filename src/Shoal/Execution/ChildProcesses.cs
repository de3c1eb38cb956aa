using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Shoal.Execution;

/// <summary>
/// Reaps every child this process starts with <see cref="Spawner"/>: one thread blocks in <c>wait4(-1)</c> and hands
/// each exit to the callback registered for its pid. A child can exit before its spawner registered it; that exit
/// is parked until the registration arrives. Shoal starts no child through <c>System.Diagnostics.Process</c>.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A process-wide singleton that lives as long as the process.")]
internal sealed class ChildProcesses
{
    public static readonly ChildProcesses Instance = new();

    private readonly Lock _lock = new();
    private readonly Dictionary<int, Action<int, long>> _callbacks = [];
    private readonly Dictionary<int, (int Status, long Timestamp)> _early = [];
    private readonly SemaphoreSlim _live = new(0);
    private Thread? _reaper;

    /// <summary>Called by a spawner right after posix_spawn succeeded, before <see cref="Register"/>.</summary>
    public void Started()
    {
        EnsureReaper();
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
        while (true)
        {
            _live.Wait();
            int pid;
            int status;
            while (true)
            {
                pid = Native.Wait4(-1, out status, 0, null);
                if (pid > 0)
                {
                    break;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno != Native.EINTR)
                {
                    // ECHILD: nothing to wait for (cannot happen while _live counts correctly); do not spin.
                    Thread.Sleep(10);
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
